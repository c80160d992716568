"""The jail holds (issue 14): each submission of tests/corpus/escape/ attacks the grader
through the CLI and through ``serve``, and each test asserts that the attack failed: files
unchanged, nothing secret in what came back, the grader alive, nothing left running, and an
honest submission graded right afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from judge_helpers import CHALLENGES, REPO, SOLUTIONS, message
from runner.sandbox import jail

ESCAPES = REPO / "tests" / "corpus" / "escape"
CHALLENGE = CHALLENGES / "easy" / "1_vector_add"
SECRET = "JUDGE-SECRET-3f9a1c"
OTHER_JOB = "OTHER-JOB-SECRET"
PROBE_NAME = "grader-escape-probe"
PLANTED_NAMES = ("cuda_utils.so", "__triton_launcher.so", "launcher.so", "solution.so")
DAEMON_NAME = "zombie-daemon-x"

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not jail.probe()[0], reason=f"no jail here: {jail.probe()[1]}")]

# attack -> (the verdict it must get or None for "any but accepted-by-escaping", limits)
ATTACKS = {
    "source_rewrite": None,
    "store_access": None,
    "other_jobs": None,
    "proc_environ": None,
    "namespace_escape": None,
    "kill_parent": None,
    "zombie_thread_daemon": None,
    "setsid_memory": ("memory_limit_exceeded",),
    # 200 forks of a process with torch loaded: the process cap, or their memory (each
    # process's resident pages count), whichever the watcher sees first
    "fork_bomb": ("runtime_error", "memory_limit_exceeded"),
    "write_outside": None,
    "cache_tamper": None,
    # issue 24: the jail's contents are hostile to the trusted side
    "message_symlink": ("rejected",),
    "planted_library": None,
    "fallocate_burst": None,
    "cuda_library_plant": None,
    "pid1_injection": None,
    "io_uring": None,
    "socket_families": None,
}
# attack -> what its printed findings must say (issue 24: the filter holds in every process)
FINDINGS = {
    "pid1_injection": ["pid 1: Seccomp 2", "unfiltered processes: none",
                       "keyctl from the submission's own process: EPERM"],
    "io_uring": ["io_uring_setup: EPERM", "io_uring_enter: EPERM", "io_uring_register: EPERM"],
    "socket_families": ["netlink: EAFNOSUPPORT", "vsock: EAFNOSUPPORT", "packet: EAFNOSUPPORT",
                        "socketpair inet: EAFNOSUPPORT", "socketpair unix: opened"],
}
OUTSIDE = [Path("/tmp") / PROBE_NAME, Path("/var/tmp") / PROBE_NAME, Path("/dev/shm") / PROBE_NAME,
           Path.home() / PROBE_NAME, REPO / PROBE_NAME]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host(tmp_path, monkeypatch):
    """What an attacker is after: a store with a secret, a token in the environment, another
    job's files, the grader's own source."""
    data = tmp_path / "judge-data"
    data.mkdir()
    store = data / "judge.sqlite"
    store.write_bytes(b"SQLite format 3\0" + SECRET.encode() + b" verdict=wrong_answer")
    other = Path("/tmp") / f"grading-other-{os.getpid()}" / "msgs"
    other.mkdir(parents=True, exist_ok=True)
    (other / "00001.pt").write_text(OTHER_JOB)
    monkeypatch.setenv("JUDGE_WORKER_TOKEN", SECRET)
    monkeypatch.setenv("JUDGE_ADMIN_TOKEN", SECRET)
    for path in OUTSIDE:
        path.unlink(missing_ok=True)
    # the grader's cache folder with a measured ceiling and a case floor in it (the jail
    # shows only its build caches; the child is told where the folder is)
    cache = tmp_path / "grader-cache"
    for name, content in (("ceilings/ceiling-v1-NVIDIA_H200.json", '{"gbps": 4390.0}'),
                          ("floors/floor-v1-NVIDIA_H200-69206016.json", '{"ms": 0.0195}'),
                          (f"cuda-trusted/{'ab' * 32}.so", "a library the trusted side built")):
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_text(content)
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(cache))
    watched = [store, REPO / "runner" / "grader" / "grade.py",
               REPO / "runner" / "sandbox" / "jail.py", *sorted(cache.rglob("*.json")), *sorted(cache.rglob("*.so"))]
    before = {p: digest(p) for p in watched}
    yield {"store": store, "data": data, "before": before, "cache": cache, "started": time.time() - 1}
    for path in OUTSIDE:
        path.unlink(missing_ok=True)
    (other / "00001.pt").unlink()
    other.rmdir()
    other.parent.rmdir()


def assert_attack_failed(name: str, verdict: str, text: str, host) -> None:
    assert "ESCAPED" not in text, text[-3000:]
    assert SECRET not in text and OTHER_JOB not in text, text[-3000:]
    for path, sha in host["before"].items():
        assert digest(path) == sha, f"{path} was changed"
    for path in OUTSIDE:
        assert not path.exists(), f"{path} was written"
    forged = [p for pattern in ("*.json", "*.so") for p in host["cache"].rglob(pattern)
              if p not in host["before"]]
    assert not forged, f"the grader's cache folder gained {forged}"
    planted = [p for folder in (host["cache"], Path.home() / ".triton", Path.home() / ".cache")
               for name in PLANTED_NAMES for p in folder.rglob(name)
               if p.stat().st_mtime >= host["started"]]
    assert not planted, f"a library was planted where the trusted side looks: {planted}"
    if ATTACKS.get(name):
        assert verdict in ATTACKS[name], (verdict, text[-2000:])
    for finding in FINDINGS.get(name, []):
        assert finding in text, (finding, text[-3000:])
    if name == "pid1_injection":   # every process the jail shows runs under the filter
        modes = re.findall(r"pid \d+: Seccomp (\w+)", text)
        assert len(modes) >= 2 and set(modes) == {"2"}, (modes, text[-3000:])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _daemons():
        time.sleep(0.2)
    assert not _daemons(), "a process of the submission outlived its grading"


def _daemons():
    found = []
    for task in Path("/proc").glob("[0-9]*/task/[0-9]*/comm"):
        try:
            if task.read_text().strip() == DAEMON_NAME:
                found.append(task)
        except OSError:
            continue
    return found


def cli(solution: Path, cwd: Path, store: Path):
    """The CLI as a user runs it, from the folder that holds the store, naming it on its
    command line (where an attacker outside a jail would find it in /proc)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "run_challenge.py"), str(CHALLENGE), "--solution",
         str(solution), "--device", "cpu", "--json", "--memory-limit", "1", "--timeout", "60",
         "--seed", "7", f"--nvcc-flag=-DSTORE={store}"],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_escape_fails_through_the_cli(tmp_path, host, name):
    result = cli(ESCAPES / f"{name}.pytorch.py", host["data"], host["store"])
    assert result["verdict"] != "internal_error", result
    assert_attack_failed(name, result["verdict"], json.dumps(result), host)
    honest = cli(SOLUTIONS / "correct.pytorch.py", host["data"], host["store"])
    assert honest["verdict"] == "accepted", honest


def test_every_escape_fails_through_serve(judge_factory, host):
    judge = judge_factory(limits={"host_memory_bytes": 2**30, "time_limit_s": 60},
                          leases={"watchdog_margin_s": 60})
    judge.start_api()
    judge.start_worker("e1")
    try:
        for name in sorted(ATTACKS):
            msg = message(action="run")
            msg["submission"]["files"][0]["content"] = (ESCAPES / f"{name}.pytorch.py").read_text()
            sid = judge.submit(msg)
            judge.wait_terminal(sid, timeout=300)
            record = judge.record(sid)
            text = json.dumps(record) + "\n".join(json.dumps(e) for e in judge.events(sid))
            verdict = (record.get("result") or {}).get("verdict", "")
            assert verdict and verdict != "internal_error", (name, record, judge.dump_logs())
            assert_attack_failed(name, verdict, text, host)
            honest = judge.submit(message(action="run"))
            judge.wait_terminal(honest, timeout=300)
            assert judge.record(honest)["result"]["verdict"] == "accepted", (name, judge.dump_logs())
        assert judge.api.poll() is None and all(p.poll() is None for p in judge.workers.values())
    finally:
        print(judge.dump_logs())


def test_a_memfd_hog_past_the_memory_limit_is_stopped_by_the_kernel(tmp_path, host):
    """3.8 GiB in memfds that are never mapped (no resident set to count) against a 1 GiB
    limit: the job's memory cgroup counts them and the kernel stops the jail."""
    from runner.sandbox import cgroups

    usable, why = cgroups.availability()
    if not usable:
        pytest.skip(f"no memory cgroup here: {why}")
    result = cli(ESCAPES / "memfd_hog.pytorch.py", host["data"], host["store"])
    assert result["verdict"] == "memory_limit_exceeded", result
    assert "HELD 3" not in result.get("logs", ""), result["logs"][-2000:]
    assert_attack_failed("memfd_hog", result["verdict"], json.dumps(result), host)


def test_a_fallocate_burst_never_passes_the_cap_on_disk(tmp_path, host):
    """1 GiB files allocated as fast as the kernel allows, in every writable place: the jail's
    scratch space is a tmpfs of the disk limit's size (its pages are the job's memory), so the
    host's disk never sees them; measured from outside, every 5 ms, during the grading."""
    import threading

    from runner.environment import jobs_root

    def free() -> int:
        return min(os.statvfs(p).f_bavail * os.statvfs(p).f_frsize for p in watched)

    watched = sorted({str(jobs_root()), str(tmp_path), "/var/tmp"})
    start, lowest, running = free(), [free()], [True]

    def poll():
        while running[0]:
            lowest[0] = min(lowest[0], free())
            time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        result = cli(ESCAPES / "fallocate_burst.pytorch.py", host["data"], host["store"])
    finally:
        running[0] = False
        poller.join()
    assert start - lowest[0] < 256 << 20, f"the host's disk lost {(start - lowest[0]) >> 20} MiB"
    logs = result.get("logs", "")
    if "ALLOCATED" in logs:     # it finished: it got at most the scratch space and /dev/shm
        allocated = int(logs.split("ALLOCATED ")[1].split()[0])
        assert allocated <= (4 << 10) + 256, logs[-2000:]
    assert_attack_failed("fallocate_burst", result["verdict"], json.dumps(result), host)


def aimed(tmp_path: Path, target: Path) -> Path:
    """The message-symlink attack aimed at ``target`` (an attacker who knows where it is)."""
    path = tmp_path / "message_symlink.pytorch.py"
    path.write_text((ESCAPES / "message_symlink.pytorch.py").read_text()
                    .replace("@TARGET@", str(target)))
    return path


def test_a_message_naming_a_host_file_through_a_link_leaves_the_file_alone(tmp_path, host):
    """The grader once deleted the file (it opened msgs/<name> through a swapped folder link
    and unlinked it): now a message names outputs, never a file, and the child's bytes are
    read from the pipe as the outputs the grader expects."""
    victim = host["data"] / "victim.txt"
    victim.write_text("a host file")
    result = cli(aimed(tmp_path, victim), host["data"], host["store"])
    assert result["verdict"] == "rejected", result
    assert "unexpected tensors" in result["message"], result["message"]
    assert victim.read_text() == "a host file"
    assert_attack_failed("message_symlink", result["verdict"], json.dumps(result), host)


def test_the_store_survives_a_message_aimed_at_it_through_serve(judge_factory, host, tmp_path):
    judge = judge_factory(limits={"host_memory_bytes": 2**30, "time_limit_s": 60},
                          leases={"watchdog_margin_s": 60})
    judge.start_api()
    judge.start_worker("e1")
    try:
        first = judge.submit(message(action="run"))
        judge.wait_terminal(first, timeout=300)
        store = judge.tmp / "data" / "judge.sqlite3"
        assert store.is_file()
        before = store.stat().st_ino
        msg = message(action="run")
        msg["submission"]["files"][0]["content"] = aimed(tmp_path, store).read_text()
        sid = judge.submit(msg)
        judge.wait_terminal(sid, timeout=300)
        assert judge.record(sid)["result"]["verdict"] == "rejected", judge.record(sid)
        assert store.is_file() and store.stat().st_ino == before
        # every other result is still there, and the judge still grades
        assert judge.record(first)["result"]["verdict"] == "accepted"
        honest = judge.submit(message(action="run"))
        judge.wait_terminal(honest, timeout=300)
        assert judge.record(honest)["result"]["verdict"] == "accepted", judge.dump_logs()
    finally:
        print(judge.dump_logs())


def test_without_bubblewrap_the_cli_refuses_to_grade_unless_told_no_sandbox(tmp_path):
    """A missing jail is never a quiet fallback: the CLI grades nothing, says how to install
    bubblewrap, and grades in its own process only with --no-sandbox."""
    command = [sys.executable, str(REPO / "run_challenge.py"), str(CHALLENGE), "--solution",
               str(SOLUTIONS / "correct.pytorch.py"), "--device", "cpu", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADER_BWRAP": str(tmp_path / "no-bwrap")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["verdict"] == "usage_error" and result["tests"] == [], result
    assert "bubblewrap (bwrap) was not found" in result["message"]
    assert "apt-get install bubblewrap" in done.stderr and "--no-sandbox" in done.stderr
    done = subprocess.run(command + ["--no-sandbox"], capture_output=True, text=True,
                          timeout=600, env=env)
    result = json.loads(done.stdout)
    assert result["verdict"] == "accepted", result
    assert any("not isolated" in n for n in result["notes"])


def test_a_jail_binary_deleted_after_a_grading_is_a_loud_error_never_unjailed(tmp_path):
    """The jail worked once, then its binary went away: the next grading refuses (an error
    naming the missing jail), it never runs the solution without one."""
    from runner.grader.grade import grade_safely
    from runner.grader.options import GradeOptions
    from runner.catalog import find_challenge
    from runner.sandbox.limits import Limits

    real = jail.bwrap_path()
    copy = tmp_path / "bwrap"
    copy.write_bytes(Path(real).read_bytes())
    copy.chmod(0o755)
    probe = tmp_path / "probe.pytorch.py"
    probe.write_text("import os\ndef solve(A, B, C, N):\n"
                     "    print('UNJAILED' if os.getuid() == 0 else 'jailed')\n"
                     "    C.copy_(A + B)\n")
    options = GradeOptions(action="run", limits=Limits(timeout_s=120))
    old = os.environ.get("GRADER_BWRAP")
    os.environ["GRADER_BWRAP"] = str(copy)
    jail.probe.cache_clear()
    try:
        first = grade_safely(find_challenge(str(CHALLENGE)), probe, "pytorch", options)
        assert first.verdict == "accepted" and "jailed" in first.logs, (first.verdict, first.logs)
        copy.unlink()
        second = grade_safely(find_challenge(str(CHALLENGE)), probe, "pytorch", options)
    finally:
        if old is None:
            os.environ.pop("GRADER_BWRAP", None)
        else:
            os.environ["GRADER_BWRAP"] = old
        jail.probe.cache_clear()
    assert second.verdict == "internal_error", (second.verdict, second.logs)
    assert "UNJAILED" not in second.logs and "bubblewrap" in second.message, second.message


def test_serve_refuses_to_start_workers_without_a_sandbox(tmp_path):
    from judge_helpers import write_config

    config = write_config(tmp_path / "judge.yaml", workers="cpu:1")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADER_BWRAP": str(tmp_path / "no-bwrap")}
    done = subprocess.run([sys.executable, str(REPO / "run_challenge.py"), "serve", "--config",
                           str(config), "--data-dir", str(tmp_path / "data"), "--port", "0"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refusing to start workers" in done.stderr and "--allow-unsandboxed" in done.stderr


def test_the_jail_loads_its_seccomp_filter_and_it_names_the_escape_calls(tmp_path):
    pytest.importorskip("pyseccomp")
    filt = jail.build_filter()
    with open(tmp_path / "filter.pfc", "w+") as f:
        filt.export_pfc(f)
        f.seek(0)
        text = f.read()
    for name in ("setns", "unshare", "mount", "ptrace", "bpf", "perf_event_open", "keyctl",
                 "process_vm_readv", "init_module", "io_uring_setup", "personality", "socket"):
        assert name in text, name
    result = cli(ESCAPES / "namespace_escape.pytorch.py", tmp_path, tmp_path / "none")
    assert not any("seccomp" in note for note in result["notes"]), result["notes"]
    assert "ptrace: EPERM" in result["logs"] and "bpf: EPERM" in result["logs"], result["logs"]
