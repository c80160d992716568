"""The pre-warmed, single-use jail (runner/sandbox/warm.py): started before its job is known,
used for exactly one grading, destroyed after it or on any error, nothing left behind, and
nothing of one grading visible to the next."""

import os
import time
from pathlib import Path

import pytest
import torch

from runner import procs
from runner.catalog import challenge_info
from runner.protocol import Job
from runner.grader.grade import grade
from runner.grader.options import GradeOptions
from runner.sandbox import gpus, jail, warm
from runner.sandbox.limits import Limits
from tests.helpers import REFERENCE_96

REPO = Path(__file__).resolve().parent.parent
CHALLENGE_96 = REPO / "challenges" / "medium" / "96_int8_kv_cache_attention"

pytestmark = pytest.mark.skipif(not jail.probe()[0], reason="no bubblewrap jail here")

# a pytorch solution for 96 that first does something with the jail (SNIPPET), then solves
SOLVE = (REFERENCE_96 / "solution.pytorch.py").read_text()


def solution(tmp_path: Path, name: str, snippet: str) -> Path:
    path = tmp_path / name / "solution.pytorch.py"
    path.parent.mkdir()
    path.write_text(snippet + "\n" + SOLVE)
    return path


def park(**kw) -> warm.ParkedJail:
    parked = warm.ParkedJail.start("cpu", Limits(), **kw)
    assert parked.wait_parked(120), "the parked jail never said parked"
    return parked


def left_behind(parked: warm.ParkedJail) -> list:
    """What of the jail still exists: its process, its folder, its cgroup."""
    out = []
    if parked.proc is not None and parked.proc.poll() is None:
        out.append(f"process {parked.proc.pid}")
    if parked.job_dir is not None and parked.job_dir.exists():
        out.append(str(parked.job_dir))
    if parked.group is not None:
        out += [str(p) for p in parked.group.paths if p.exists()]
    return out


def run_96(path: Path, parked=None, **kw):
    return grade(challenge_info(CHALLENGE_96), path, "pytorch",
                 GradeOptions(action="run", parked=parked, warm_start=False, **kw))


def test_a_parked_jail_grades_once_and_is_destroyed(tmp_path):
    parked = park()
    assert parked.state == "parked" and parked.alive()
    assert parked.job_dir.exists() and not any((parked.job_dir / "submission").iterdir())
    started = time.monotonic()
    result = run_96(REFERENCE_96 / "solution.pytorch.py", parked)
    assert result.verdict == "accepted", (result.message, result.details, result.logs)
    assert time.monotonic() - started < 30
    assert parked.state == "discarded" and left_behind(parked) == []
    # used once: it cannot take a second job
    with pytest.raises(warm.WarmUnusable):
        parked.grade(None, CHALLENGE_96, REFERENCE_96 / "solution.pytorch.py", None, Limits(),
                     None, lambda m: None)


def test_a_dead_parked_jail_is_discarded_and_the_grading_goes_cold(tmp_path):
    parked = park()
    procs.kill_tree(parked.proc.pid, groups=[parked.proc.pid])
    procs.wait_exited(parked.proc, 10)
    result = run_96(REFERENCE_96 / "solution.pytorch.py", parked)
    assert result.verdict == "accepted", (result.message, result.details, result.logs)
    assert parked.state == "discarded" and left_behind(parked) == []


def test_a_jail_that_does_not_fit_the_job_is_discarded_before_the_handover(tmp_path):
    parked = park()
    why = parked.fits("cpu", Limits(disk_bytes=2**20))
    assert "scratch" in why
    job = Job(challenge_path=str(CHALLENGE_96), solution_path="x", language="pytorch",
              device="cpu", action="run", seed=0, perf_copies=1, nvcc_flags=[],
              gpu_memory_fraction=None)
    with pytest.raises(warm.WarmUnusable):
        parked.grade(job, CHALLENGE_96, REFERENCE_96 / "solution.pytorch.py", None,
                     Limits(disk_bytes=2**20), None, lambda m: None)
    assert parked.state == "discarded" and left_behind(parked) == []
    assert not parked.wait_parked(0) and not parked.alive()


def test_discarding_a_parked_jail_leaves_nothing_and_a_new_one_starts():
    first = warm.ParkedJail.start("cpu", Limits())
    pid = first.proc.pid
    first.discard()                          # while it is still starting
    assert left_behind(first) == []
    assert pid not in procs.descendants(os.getpid())
    second = park()                          # the next one is a fresh jail
    assert second.proc.pid != pid and second.job_dir != first.job_dir
    second.discard()
    assert left_behind(second) == []


def test_nothing_of_one_grading_reaches_the_next(tmp_path):
    """Two jails parked at once; the first grading leaves files in its scratch space, its
    shared memory and its own view, and a process; the second sees none of them, and its view
    holds only its own solution."""
    writer = solution(tmp_path, "a", (
        "import os, subprocess\n"
        "open('/tmp/planted', 'w').write('x')\n"
        "open('/dev/shm/planted', 'w').write('x')\n"
        "subprocess.Popen(['/bin/sleep', '600'])\n"
        "for folder in ('/submission', '/challenge', '/library'):\n"
        "    try:\n"
        "        open(folder + '/planted', 'w').write('x')\n"
        "        raise SystemExit('the parked view is writable: ' + folder)\n"
        "    except OSError:\n"
        "        pass\n"))
    reader = solution(tmp_path, "b", (
        "import os\n"
        "seen = [p for p in ('/tmp/planted', '/dev/shm/planted', '/submission/planted') "
        "if os.path.exists(p)]\n"
        "assert not seen, seen\n"
        "assert os.listdir('/submission') == ['solution.pytorch.py'], os.listdir('/submission')\n"
        "assert 'sleep' not in ' '.join(open(f'/proc/{p}/cmdline').read() "
        "for p in os.listdir('/proc') if p.isdigit()), 'a process of the other grading'\n"))
    first, second = park(), park()
    result = run_96(writer, first)
    assert result.verdict == "accepted", (result.message, result.details, result.logs)
    assert left_behind(first) == []
    result = run_96(reader, second)
    assert result.verdict == "accepted", (result.message, result.details, result.logs)
    assert left_behind(second) == []


def test_grade_starts_its_own_jail_first_thing_and_removes_it(tmp_path, monkeypatch):
    started = []
    real = warm.ParkedJail.start

    def spy(*args, **kw):
        started.append(real(*args, **kw))
        return started[-1]

    monkeypatch.setattr(warm.ParkedJail, "start", spy)
    result = grade(challenge_info(CHALLENGE_96), REFERENCE_96 / "solution.pytorch.py",
                   "pytorch", GradeOptions(action="run"))
    assert result.verdict == "accepted", (result.message, result.details, result.logs)
    assert len(started) == 1 and started[0].state == "discarded"
    assert left_behind(started[0]) == []


def test_a_failed_build_discards_the_jail_started_for_it(tmp_path, monkeypatch):
    """A grading that ends before the hand-over (here: the challenge cannot be loaded) still
    destroys the jail it started."""
    started = []
    real = warm.ParkedJail.start

    def spy(*args, **kw):
        started.append(real(*args, **kw))
        return started[-1]

    monkeypatch.setattr(warm.ParkedJail, "start", spy)
    import runner.grader.grade as grade_module

    def broken(*args, **kw):
        raise RuntimeError("the plan failed")

    monkeypatch.setattr(grade_module, "make_plan", broken)
    with pytest.raises(RuntimeError):
        grade(challenge_info(CHALLENGE_96), REFERENCE_96 / "solution.pytorch.py", "pytorch",
              GradeOptions(action="run"))
    assert len(started) == 1 and left_behind(started[0]) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_a_parked_jail_makes_its_cuda_context_while_parked():
    parked = warm.ParkedJail.start("cuda:0", Limits())
    try:
        assert parked.wait_parked(120)
    finally:
        parked.discard()
    assert left_behind(parked) == []


def test_the_job_takes_its_limits_on_the_parked_jails_cgroup():
    parked = park()
    try:
        if parked.group is None:
            pytest.skip("no cgroup here")
        for memory in (2**30, 32 * 2**30, 3 * 2**30):      # lowered, raised, lowered
            warm.relimit(parked.group, memory, 100)
            assert parked.group.memory_bytes == memory
            mem = parked.group.dirs["memory"]
            limit = mem / ("memory.max" if parked.group.version == 2 else "memory.limit_in_bytes")
            assert int(limit.read_text()) == memory
    finally:
        parked.discard()
    assert left_behind(parked) == []


def test_a_jail_started_for_one_solution_takes_no_other(tmp_path):
    other = solution(tmp_path, "other", "")
    parked = warm.ParkedJail.start("cpu", Limits(), challenge_dir=CHALLENGE_96,
                                   solution=REFERENCE_96 / "solution.pytorch.py")
    assert parked.shows(CHALLENGE_96, other)
    result = run_96(other, parked)             # discarded before the hand-over; graded cold
    assert result.verdict == "accepted", (result.message, result.details, result.logs)
    assert parked.state == "discarded" and left_behind(parked) == []


def test_a_jail_parked_without_its_gpu_context_is_told_when_the_gpu_is_free(tmp_path):
    """Parked beside another grading: no CUDA context until warm_gpu(); the job works after
    the command (and without it: the grading then makes the context itself)."""
    for tell in (True, False):
        parked = warm.ParkedJail.start("cpu", Limits(), gpu_warm=False)
        assert parked.wait_parked(120)
        if tell:
            parked.warm_gpu()
            parked.warm_gpu()                  # once only
        result = run_96(REFERENCE_96 / "solution.pytorch.py", parked)
        assert result.verdict == "accepted", (result.message, result.details, result.logs)
        assert left_behind(parked) == []


def test_the_sandbox_side_of_a_jails_start_imports_no_torch():
    """The CLI starts its jail before it imports torch (the jail's own import runs beside it)."""
    import subprocess
    import sys

    code = ("import sys; import runner.sandbox.warm, runner.sandbox.parent; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_cli_grades_in_the_jail_it_started_first(tmp_path, monkeypatch, capsys):
    from runner.cli import main

    started = []
    real = warm.ParkedJail.start

    def spy(*args, **kw):
        started.append(real(*args, **kw))
        return started[-1]

    monkeypatch.setattr(warm.ParkedJail, "start", spy)
    code = main(["96", "--solution", str(REFERENCE_96 / "solution.pytorch.py"), "--action", "run",
                 "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    assert code == 0 and '"accepted"' in out, out[-2000:]
    assert len(started) == 1 and started[0].solution == (REFERENCE_96 / "solution.pytorch.py").resolve()
    assert started[0].state == "discarded" and left_behind(started[0]) == []


def test_only_gpu_reads_the_drivers_files(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    driver = tmp_path / "gpus"
    (driver / "0000:19:00.0").mkdir(parents=True)
    (driver / "0000:19:00.0" / "information").write_text(
        "Model: \t\t NVIDIA H100 80GB HBM3\nGPU UUID: \t GPU-1234-abcd\nDevice Minor: \t 3\n")
    assert gpus.only_gpu(driver) == ("GPU-1234-abcd", 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpus.only_gpu(driver) is None                  # narrowed: torch decides
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    (driver / "0000:1a:00.0").mkdir()
    assert gpus.only_gpu(driver) is None                  # two GPUs: which is cuda:0 is torch's
