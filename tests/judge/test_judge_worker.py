"""GPU hygiene and the one-command setups: what a job process may see, how many workers a host
starts, and `run_challenge.py serve` with its own workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pathlib import Path

import pytest

from judge_helpers import REPO, free_port, leetgpu_client
from runner.judge.accelerators import Accelerators
from runner.judge.challenge_set import ChallengeSet, code_digest
from runner.judge.worker.job_process import job_environment
from runner.judge.worker.slots import SlotBusy, hold_slot
from runner.judge.worker.settings import WorkerSettings
from runner.judge.worker.supervisor import plan_workers

pytestmark = pytest.mark.timeout(120)


def settings(**kw) -> WorkerSettings:
    return WorkerSettings(url="http://127.0.0.1:1", token="t" * 30, accelerator="H100", **kw)


def test_a_job_sees_only_its_gpu_and_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_WORKER_TOKEN", "secret-worker-token")
    monkeypatch.setenv("JUDGE_REDIS_URL", "redis://user:password@redis/0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    env = job_environment(settings(gpu=2), tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and "NVIDIA_VISIBLE_DEVICES" not in env
    assert not any("TOKEN" in k or "REDIS" in k for k in env)
    assert "secret-worker-token" not in env.values()
    cpu = job_environment(settings(slot="0"), tmp_path)
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and cpu["TRITON_INTERPRET"] == "1"


def test_a_slots_jobs_keep_the_graders_measurements_out_of_the_jobs_folder(tmp_path):
    """The device's ceiling and case floors (and the probe's Triton kernel) are measured by
    a slot's first timed job and kept for the next in one folder per slot and judge instance,
    outside the folders that jobs own and the worker cleans."""
    from runner.judge.worker.job_process import jobs_folder
    gpu = settings(gpu=2, jobs_root=tmp_path)
    env = job_environment(gpu, tmp_path / "judge-jobs-gpu2" / "job-1")
    assert env["CHALLENGE_CACHE_DIR"] == str(tmp_path / "judge-cache-gpu2")
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "judge-cache-gpu2" / "triton")
    assert not Path(env["CHALLENGE_CACHE_DIR"]).is_relative_to(jobs_folder(gpu))
    other = job_environment(settings(gpu=2, jobs_root=tmp_path / "other-judge"), tmp_path)
    assert other["CHALLENGE_CACHE_DIR"] != env["CHALLENGE_CACHE_DIR"]


def test_one_worker_per_gpu_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_LOCK_DIR", str(tmp_path))
    first = hold_slot(settings(gpu=1, lock_dir=tmp_path))
    with pytest.raises(SlotBusy, match="gpu1 is already held"):
        hold_slot(settings(gpu=1, lock_dir=tmp_path))
    hold_slot(settings(gpu=0, lock_dir=tmp_path)).close()   # another GPU is free
    first.close()
    hold_slot(settings(gpu=1, lock_dir=tmp_path)).close()   # and this one once released


def test_two_judges_share_no_cpu_slot_lock_but_a_gpu_is_one_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_LOCK_DIR", str(tmp_path / "machine"))
    a, b = tmp_path / "judge-a" / "workers", tmp_path / "judge-b" / "workers"
    cpu_a = hold_slot(settings(slot="0", lock_dir=a))
    cpu_b = hold_slot(settings(slot="0", lock_dir=b))       # another judge's cpu0: no collision
    gpu_a = hold_slot(settings(gpu=0, lock_dir=a))
    with pytest.raises(SlotBusy, match=f"GPU 0 is already held by pid {os.getpid()}"):
        hold_slot(settings(gpu=0, lock_dir=b))
    gpu_a.close()
    hold_slot(settings(gpu=0, lock_dir=b)).close()
    for lock in (cpu_a, cpu_b):
        lock.close()


def test_the_jobs_folder_follows_the_lock_folder(tmp_path, monkeypatch):
    from runner.judge.worker.job_process import jobs_folder
    from runner.judge.worker.settings import build_parser, settings_from_args
    monkeypatch.setenv("JUDGE_WORKER_TOKEN", "t" * 30)
    args = build_parser().parse_args(["--url", "http://x", "--accelerator", "cpu", "--cpu", "0",
                                      "--lock-dir", str(tmp_path / "w"), "--allow-unsandboxed"])
    assert jobs_folder(settings_from_args(args)) == tmp_path / "w" / "judge-jobs-cpu0"
    args = build_parser().parse_args(["--url", "http://x", "--accelerator", "cpu", "--cpu", "0",
                                      "--lock-dir", str(tmp_path / "w"), "--jobs-dir",
                                      str(tmp_path / "j")])
    assert jobs_folder(settings_from_args(args)) == tmp_path / "j" / "judge-jobs-cpu0"


def test_a_host_starts_one_worker_per_gpu():
    specs = plan_workers("gpus:0,2", lambda k: "H100", "cpu")
    assert [(s.gpu, s.accelerator) for s in specs] == [(0, "H100"), (2, "H100")]
    assert [s.cpu_slot for s in plan_workers("cpu:3", None, "cpu")] == ["0", "1", "2"]
    assert plan_workers("none", None, "cpu") == []


def test_accelerator_aliases_and_challenge_matching():
    acc = Accelerators({"H100": ["NVIDIA H100 80GB HBM3"], "cpu": []})
    assert acc.resolve(None) == "H100" and acc.resolve("nvidia h100") == "H100"
    assert acc.resolve("NVIDIA H100 80GB HBM3") == "H100" and acc.resolve(" CPU ") == "cpu"
    assert code_digest("a = 1\r\nb = 2  \r\n\r\n") == code_digest("a = 1\nb = 2\n")
    challenge_set = ChallengeSet()
    text = (challenge_set.find(96).path / "challenge.py").read_text()
    assert challenge_set.match_code(text.replace("\n", "\r\n")).number == 96
    assert challenge_set.match_code(text + "\nx = 1\n") is None


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_serve_alone_runs_api_and_a_local_worker_with_auth_off(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "run_challenge.py"), "serve", "--port",
                             str(port), "--data-dir", str(tmp_path / "data"), "--workers", "cpu:1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,
                            env={**os.environ, "JUDGE_LOCK_DIR": str(tmp_path / "locks")})
    try:
        import httpx

        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                health = httpx.get(url + "/healthz", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert health["auth"] == "off" and health["accelerators"] == ["cpu"]
        code = (REPO / "challenges/medium/96_int8_kv_cache_attention/challenge.py").read_text()
        solution = (REPO / "challenges/medium/96_int8_kv_cache_attention/reference"
                    / "solution.pytorch.py").read_text()
        log = leetgpu_client(url, {"action": "run", "token": None, "submission": {
            "files": [{"name": "solution.pytorch.py", "content": solution}],
            "language": "pytorch", "accelerator": "cpu", "mode": "accelerated", "public": False,
            "challengeCode": code}}, timeout=120)
        assert log[-1]["status"] == "success", log[-1]
        assert log[-1]["output"]["challenge"] == "96_int8_kv_cache_attention"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "authentication is OFF" in out
    # the worker's long-poll claim ends when shutdown begins, not by cancellation
    assert "Traceback" not in out, out[-3000:]


SUPERVISOR = """
import os, subprocess, sys, time
w = subprocess.Popen([sys.executable, "-m", "runner.judge.worker", "--url", sys.argv[1],
                      "--accelerator", "cpu", "--cpu", "0", "--lock-dir", sys.argv[2],
                      "--parent-pid", str(os.getpid())])
print(w.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(60)
def test_a_supervised_worker_stops_when_its_supervisor_is_gone(tmp_path):
    """A `serve` killed alone (not its process group) must not leave workers polling forever."""
    parent = subprocess.Popen([sys.executable, "-c", SUPERVISOR, f"http://127.0.0.1:{free_port()}",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "JUDGE_WORKER_TOKEN": "t" * 30,
                                   "PYTHONPATH": str(REPO)})
    worker_pid = int(parent.stdout.readline())
    try:
        time.sleep(3.0)
        assert _alive(worker_pid)                      # serving (retrying an absent judge)
    finally:
        parent.kill()                                  # SIGKILL: the supervisor alone
        parent.wait()
    deadline = time.monotonic() + 30
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker_pid), "the worker outlived its supervisor"
