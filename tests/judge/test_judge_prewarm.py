"""The worker's parked job process (runner/judge/worker/prewarm.py): started before its job (with a
parked jail of its own), handed exactly one job, stopped after it; one that died or is too old
is replaced by a cold start; discarding it leaves no process, folder or cgroup behind."""

import json
import os
import time
from pathlib import Path

import pytest

from runner import procs
from runner.judge.worker.job_process import JobProcess, jobs_folder
from runner.judge.worker.prewarm import Prewarm
from runner.judge.worker.settings import WorkerSettings
from runner.sandbox import cgroups, jail

REPO = Path(__file__).resolve().parents[2]
REFERENCE = (REPO / "challenges/medium/96_int8_kv_cache_attention/reference"
             / "solution.pytorch.py").read_text()

pytestmark = pytest.mark.skipif(not jail.isolation_refusal() == "",
                                reason="no jail or no cgroup here")


def settings(tmp_path: Path) -> WorkerSettings:
    return WorkerSettings(url="http://127.0.0.1:1", token="t" * 30, accelerator="cpu",
                          slot="prewarm", jobs_root=tmp_path, lock_dir=tmp_path,
                          term_grace_s=1.0, kill_wait_s=5.0, prewarm=True)


def spec(content: str = REFERENCE):
    return {"job": {"challenge": "96", "language": "pytorch", "action": "run", "seed": 3,
                    "content": content},
            "device": "cpu", "timeLimitSeconds": 120, "hostMemoryBytes": 4 * 2**30,
            "challengeDirs": [str(REPO / "challenges")], "sandbox": "require"}


def result_of(job: JobProcess, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in job.read(timeout=0.2):
            msg = json.loads(line)
            if "result" in msg:
                return msg["result"]
        if job.output_closed():
            break
    raise AssertionError(f"no result: {job.stderr_tail()[-2000:]}")



def nothing_left(s: WorkerSettings, job: JobProcess, keep=None) -> None:
    assert not procs.is_alive(job.pid)
    assert not job.home.exists()
    assert list(jobs_folder(s).iterdir()) == ([keep.home] if keep else [])
    assert not any(Path("/sys/fs/cgroup").glob(f"**/grader-job-{job.pid}-*"))


def test_a_parked_job_process_grades_one_job_and_the_next_is_fresh(tmp_path):
    s = settings(tmp_path)
    pre = Prewarm(s)
    pre.ensure()
    first = pre.parked
    deadline = time.monotonic() + 120
    while not list(first.home.glob("parked-*/job.json")):      # its jail is starting
        assert time.monotonic() < deadline and first.proc.poll() is None, first.stderr_tail()
        time.sleep(0.2)
    pre.ensure()                                     # still usable: kept
    assert pre.parked is first and pre.started == 1
    pre.gpu_free()                                   # the GPU stage (nothing on a CPU slot)
    pre.gpu_free()                                   # said twice: harmless
    job = pre.take(spec())
    assert job is first and pre.parked is None
    result = result_of(job)
    assert not list(job.home.glob("grading-*")), "a cold jail was started"
    assert result["verdict"] == "accepted", result
    job.stop(exit_grace_s=5.0, term_grace_s=1.0, kill_wait_s=5.0)
    nothing_left(s, job)
    pre.ensure()                                     # the next: another process
    assert pre.parked is not None and pre.parked.pid != job.pid
    second = pre.parked
    pre.discard()
    nothing_left(s, second)


def test_a_dead_or_old_parked_process_is_replaced_by_a_cold_start(tmp_path):
    s = settings(tmp_path)
    pre = Prewarm(s)
    pre.ensure()
    dead = pre.parked
    procs.kill_tree(dead.pid, groups=[dead.pid])
    procs.wait_exited(dead.proc, 10)
    assert pre.take(spec()) is None                  # the worker then starts a cold one
    nothing_left(s, dead)
    pre.ensure()
    old = pre.parked
    pre.max_age_s = 0.0
    pre.ensure()                                     # too old: replaced before use
    assert pre.parked is not old and pre.discarded == 2
    nothing_left(s, old, keep=pre.parked)
    last = pre.parked
    pre.discard()
    nothing_left(s, last)


def test_a_parked_jail_shows_nothing_of_its_job_process_folder(tmp_path):
    """The job's folder (its description, the staged submission, the jail's own folders) is
    the job process's working directory, never shown in the jail: a submission that reads
    every file under /tmp finds none holding the text of its own job description."""
    s = settings(tmp_path)
    pre = Prewarm(s)
    pre.ensure()
    escape = (REPO / "tests" / "corpus" / "escape" / "other_jobs.pytorch.py").read_text()
    job_spec = spec(escape)
    job_spec["job"]["challenge"] = "1_vector_add"
    job_spec["challengeDirs"] = [str(REPO / "tests" / "judge" / "challenges")]
    job = pre.take(job_spec)
    assert job is not None
    result = result_of(job)
    job.stop(exit_grace_s=5.0, term_grace_s=1.0, kill_wait_s=5.0)
    assert result["verdict"] == "accepted", result
    assert "ESCAPED" not in result["logs"], result["logs"]
    assert "files read" in result["logs"]
    nothing_left(s, job)


def test_the_worker_parks_the_next_job_beside_the_current_and_its_sweep_spares_it(tmp_path):
    """Two jobs through a worker (its API faked): the next job process is parked while the
    first job runs, survives the sweep of the first job's leftovers, is told the GPU is free,
    and grades the second job; stopping the worker's prewarm leaves nothing behind."""
    from tests.judge.test_judge_worker_stops import FakeApi
    from runner.judge.worker.loop import Worker

    s = settings(tmp_path)
    w = Worker(s)
    w.api = FakeApi()
    w._subreaper = procs.become_subreaper()
    try:
        def claim(n):
            c = spec()
            return {"submissionId": f"s{n}", "lease": "l", "heartbeatSeconds": 5,
                    "timeLimitSeconds": 120, "hostMemoryBytes": 4 * 2**30, "job": c["job"]}

        s.challenge_dirs = [str(REPO / "challenges")]
        w.grade(claim(1))
        assert w.prewarm.used == 0 and w.prewarm.parked is not None
        parked = w.prewarm.parked
        assert parked.proc.poll() is None, "the sweep of the first job killed the parked one"
        w.grade(claim(2))
        assert w.prewarm.used == 1
        results = [c[1]["verdict"] for c in w.api.calls if c[0] == "complete"]
        assert results == ["accepted", "accepted"], w.api.calls
        assert not procs.is_alive(parked.pid)
        last = w.prewarm.parked
        w.prewarm.discard()
        nothing_left(s, last)
    finally:
        if w.prewarm.parked is not None:
            w.prewarm.discard()
