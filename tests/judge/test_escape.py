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
                          ("floors/floor-v1-NVIDIA_H200-69206016.json", '{"ms": 0.0195}')):
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_text(content)
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(cache))
    watched = [store, REPO / "runner" / "grade.py", REPO / "runner" / "sandbox" / "jail.py",
               *sorted(cache.rglob("*.json"))]
    before = {p: digest(p) for p in watched}
    yield {"store": store, "data": data, "before": before, "cache": cache}
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
    forged = [p for p in host["cache"].rglob("*.json") if p not in host["before"]]
    assert not forged, f"the grader's cache folder gained {forged}"
    if ATTACKS[name]:
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


def test_without_bubblewrap_the_cli_still_grades_and_says_it_is_not_isolated(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "run_challenge.py"), str(CHALLENGE), "--solution",
         str(SOLUTIONS / "correct.pytorch.py"), "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "GRADER_BWRAP": str(tmp_path / "no-bwrap")})
    result = json.loads(done.stdout)
    assert result["verdict"] == "accepted", result
    warnings = [l for l in done.stderr.splitlines() if "not isolated" in l]
    assert len(warnings) == 1 and "bubblewrap (bwrap) was not found" in warnings[0], done.stderr
    assert any("not isolated" in n for n in result["notes"])


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
