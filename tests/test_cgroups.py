"""runner.sandbox.cgroups: a job's cgroup counts and enforces memory (memfds never mapped and
/dev/shm pages included) and processes, the kernel kills past the limit, the group says so
afterwards, and kill_all + remove leave nothing behind. The kernel tests skip, saying why, where
job cgroups cannot be had (not root, cgroup v2 without a delegated subtree, no memory or pids
controller); the wrap and detection tests run everywhere."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.sandbox import cgroups
from runner.sandbox.cgroups import JobCgroup

MiB = 1 << 20
LIMIT = 200 * MiB


@pytest.fixture
def group(request):
    ok, why = cgroups.availability()
    if not ok:
        pytest.skip(f"job cgroups unavailable here: {why}")
    made = []

    def make(memory_bytes=LIMIT, max_pids=64):
        made.append(JobCgroup.create(request.node.name, memory_bytes, max_pids))
        return made[-1]

    yield make
    for g in made:
        g.kill_all()
        assert g.remove(), f"{g} left behind"


def run_in(g, code, *args):
    return subprocess.run(g.wrap([sys.executable, "-c", code, *args]), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


HOLD_MEMFD = """
import os, sys
fd = os.memfd_create("hold")          # never mapped: no RSS, only shmem charged to the group
chunk = b"x" * (1 << 20)
for _ in range(int(sys.argv[1])):
    os.write(fd, chunk)
print("survived", flush=True)
"""

HOLD_SHM = """
import sys
chunk = b"x" * (1 << 20)
with open(sys.argv[2], "wb") as f:
    for _ in range(int(sys.argv[1])):
        f.write(chunk)
        f.flush()
print("survived", flush=True)
"""


def test_memfd_never_mapped_past_the_limit_is_killed(group):
    g = group()
    done = run_in(g, HOLD_MEMFD, "400")
    assert done.returncode == -9, (done.returncode, done.stdout, done.stderr)
    assert "survived" not in done.stdout
    assert g.oom_killed(), g.counters()
    assert g.peak_memory_bytes() >= LIMIT - 2 * MiB, g.counters()


def test_dev_shm_pages_count(group):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    g = group()
    path = Path("/dev/shm") / f"grader-test-{secrets.token_hex(4)}"
    try:
        done = run_in(g, HOLD_SHM, "400", str(path))
        assert done.returncode == -9, (done.returncode, done.stdout, done.stderr)
        assert g.oom_killed(), g.counters()
        assert path.stat().st_size < LIMIT        # the file stopped growing at the limit
    finally:
        path.unlink(missing_ok=True)                # the pages stay charged until it goes


def test_fallocate_burst_is_killed(group):
    g = group()      # one call, no page touched from user space: what a 0.2 s poll misses
    done = run_in(g, "import os; fd = os.memfd_create('burst');"
                     " os.posix_fallocate(fd, 0, 400 << 20); print('survived', flush=True)")
    assert done.returncode == -9 and "survived" not in done.stdout, (done.returncode, done.stderr)
    assert g.oom_killed(), g.counters()


@pytest.mark.skipif(not shutil.which("bwrap"), reason="no bubblewrap here")
def test_a_jailed_child_in_its_own_namespaces_is_killed_too(group):
    g = group()
    shm = HOLD_SHM.replace("sys.argv[2]", "'/dev/shm/hold'")
    done = subprocess.run(g.wrap(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                                  "--tmpfs", "/dev/shm", "--unshare-all", "--unshare-cgroup",
                                  "--die-with-parent", "--uid", "1000",
                                  sys.executable, "-c", shm, "400"]),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    if done.returncode != 137 and "survived" not in done.stdout:
        pytest.skip(f"bubblewrap cannot make its namespaces here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 137 and "survived" not in done.stdout   # bwrap reports the -9
    assert g.oom_killed(), g.counters()


def test_under_the_limit_is_not_killed(group):
    g = group()
    done = run_in(g, HOLD_MEMFD, "50")
    assert done.returncode == 0 and "survived" in done.stdout, (done.returncode, done.stderr)
    assert not g.oom_killed(), g.counters()
    assert g.peak_memory_bytes() >= 50 * MiB, g.counters()    # counted although never mapped
    assert not g.pids_limit_hit()


FORK_LOOP = """
import os
r, w = os.pipe()
forked = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)          # until the parent closes its end
        os._exit(0)
    forked += 1
os.close(w)
print(forked, flush=True)
for _ in range(forked):
    os.wait()
"""


def test_fork_loop_stops_at_pids_max(group):
    g = group(max_pids=10)
    done = run_in(g, FORK_LOOP)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 9                    # the parent is the tenth
    assert g.pids_limit_hit()
    assert not g.oom_killed()


def test_process_and_children_land_in_the_group(group):
    g = group()
    code = ("import subprocess; print(open('/proc/self/cgroup').read(), flush=True);"
            " subprocess.run(['cat', '/proc/self/cgroup'])")
    done = run_in(g, code)
    assert done.returncode == 0, done.stderr
    leaf = g.paths[0].name
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    wanted = [line for line in lines if line.split(":")[1] in ("", "memory", "pids")
              and (g.version == 1) == (line.split(":")[1] != "")]
    assert len(wanted) == (2 if g.version == 2 else 4), lines      # parent's and child's
    assert all(line.endswith("/" + leaf) for line in wanted), lines


def test_kill_all_and_remove_leave_nothing(group):
    g = group()
    code = """
import os, signal
for _ in range(3):
    if os.fork() == 0:
        signal.pause()
print("ready", flush=True)
signal.pause()
"""
    proc = subprocess.Popen(g.wrap([sys.executable, "-c", code]), stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        inside = g.pids()
        assert proc.pid in inside and len(inside) == 4, inside
        assert g.kill_all()
        assert g.pids() == []
        assert proc.wait(timeout=10) == -9
        assert g.remove()
        assert not any(path.exists() for path in g.paths)
        for pid in inside:        # gone, or a zombie of whoever reaps orphans here
            status = Path(f"/proc/{pid}/status")
            assert not status.exists() or "\nState:\tZ" in status.read_text()
    finally:
        proc.kill()
        proc.wait()


def test_context_manager_removes_the_group(group):
    with JobCgroup.create("ctx", LIMIT, 16) as g:
        assert all(path.is_dir() for path in g.paths)
        assert run_in(g, "pass").returncode == 0
    assert not any(path.exists() for path in g.paths)


def test_describe_names_the_version():
    ok, why = cgroups.availability()
    line = cgroups.describe()
    assert ("enforced by cgroup v" in line) if ok else (why in line and "not enforced" in line)


# -- no kernel needed: the wrap prefix and the detection on fake trees ---------------------------

def fake_group(tmp_path):
    dirs = {c: tmp_path / c for c in cgroups.CONTROLLERS}
    for d in dirs.values():
        d.mkdir()
        (d / "cgroup.procs").write_text("")
    return JobCgroup(1, dirs, LIMIT, 16)


ODD_ARGS = ["plain", "two words", "it's", 'say "hi"', "$HOME", "`id`", "*", "--", "", "-c",
            "back\\slash", "new\nline", "tab\there", "ünïcode", "; rm -rf /"]


def test_wrap_passes_arguments_unchanged(tmp_path):
    g = fake_group(tmp_path)
    done = subprocess.run(g.wrap([sys.executable, "-c", "import sys, json;"
                                  " print(json.dumps(sys.argv[1:]))", *ODD_ARGS]),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ODD_ARGS
    # each cgroup.procs got "0" (the writer itself: the shell that then execs the command)
    assert all((p / "cgroup.procs").read_text().strip() == "0" for p in g.paths)


def test_wrap_keeps_passed_descriptors(tmp_path):
    g = fake_group(tmp_path)
    r, w = os.pipe()
    try:
        done = subprocess.run(g.wrap([sys.executable, "-c", "import os, sys;"
                                      " os.write(int(sys.argv[1]), b'through')", str(w)]),
                              pass_fds=(w,), timeout=60)
        os.close(w)
        w = -1
        assert done.returncode == 0
        assert os.read(r, 100) == b"through"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_wrap_refuses_to_run_when_it_cannot_join(tmp_path):
    g = fake_group(tmp_path)
    (g.paths[1] / "cgroup.procs").unlink()
    (g.paths[1]).rmdir()
    marker = tmp_path / "ran"
    done = subprocess.run(g.wrap(["touch", str(marker)]), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == cgroups.JOIN_FAILED
    assert "cannot join" in done.stderr
    assert not marker.exists()


def write_tree(tmp_path, mountinfo_lines, proc_cgroup):
    (tmp_path / "mountinfo").write_text("".join(line + "\n" for line in mountinfo_lines))
    (tmp_path / "cgroup").write_text(proc_cgroup)
    return str(tmp_path / "mountinfo"), str(tmp_path / "cgroup")


def test_detect_v1_hybrid_uses_the_own_groups(tmp_path):
    mem, pids = tmp_path / "memory", tmp_path / "pids"
    (mem / "job" / "x").mkdir(parents=True)
    pids.mkdir()
    mi, pc = write_tree(tmp_path, [
        f"30 25 0:27 / {mem} rw,relatime shared:9 - cgroup cgroup rw,memory",
        f"31 25 0:28 / {pids} rw,relatime shared:10 - cgroup cgroup rw,pids",
        f"32 25 0:29 / {tmp_path / 'unified'} rw,relatime - cgroup2 cgroup2 rw"],
        "8:pids:/\n4:memory:/job/x\n0::/\n")
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("\n")   # v2 without controllers
    setup = cgroups.detect(mi, pc, env_base="")
    assert setup.version == 1 and setup.bases == {"memory": mem / "job" / "x", "pids": pids}
    setup = cgroups.detect(mi, pc, env_base="/graders")
    assert setup.bases == {"memory": mem / "graders", "pids": pids / "graders"}


def test_detect_v2_without_controllers_or_hierarchies_says_why(tmp_path):
    v2 = tmp_path / "cg"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu io\n")
    mi, pc = write_tree(tmp_path, [f"30 25 0:27 / {v2} rw - cgroup2 cgroup2 rw"], "0::/\n")
    setup = cgroups.detect(mi, pc, env_base="")
    assert setup.version == 0
    assert "memory and the pids controller" in setup.reason and str(v2) in setup.reason


def test_detect_v2_explicit_base_needs_the_controllers(tmp_path):
    v2 = tmp_path / "cg"
    (v2 / "judge").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory pids\n")
    (v2 / "judge" / "cgroup.controllers").write_text("cpu\n")
    (v2 / "judge" / "cgroup.subtree_control").write_text("")
    mi, pc = write_tree(tmp_path, [f"30 25 0:27 / {v2} rw - cgroup2 cgroup2 rw"], "0::/x\n")
    setup = cgroups.detect(mi, pc, env_base=str(v2 / "judge"))
    assert setup.version == 0 and "GRADER_CGROUP" in setup.reason and "memory" in setup.reason
    (v2 / "judge" / "cgroup.controllers").write_text("cpu memory pids\n")
    setup = cgroups.detect(mi, pc, env_base=str(v2 / "judge"))
    assert setup.version == 2 and setup.bases["memory"] == v2 / "judge"
    assert (v2 / "judge" / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_detect_v2_own_group_with_processes_falls_back_to_a_grader_group_at_the_root(
        tmp_path, monkeypatch):
    v2 = tmp_path / "cg"
    (v2 / "service").mkdir(parents=True)
    for d in (v2, v2 / "service"):
        (d / "cgroup.controllers").write_text("cpu memory pids\n")
        (d / "cgroup.subtree_control").write_text("")
    busy = v2 / "service" / "cgroup.subtree_control"
    write_text = Path.write_text

    def kernel_like(self, *args, **kwargs):   # the own group holds processes: EBUSY
        if self == busy:
            raise OSError(errno.EBUSY, "Device or resource busy")
        if self.name == "cgroup.subtree_control" and not (self.parent / "cgroup.controllers").exists():
            raise AssertionError(f"{self} written before its group was made")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", kernel_like)
    mkdir = Path.mkdir

    def mkdir_like(self, *args, **kwargs):    # a new v2 group gets its parent's subtree_control
        mkdir(self, *args, **kwargs)
        if (self / "cgroup.controllers").exists():
            return
        write_text(self / "cgroup.controllers", (self.parent / "cgroup.subtree_control")
                   .read_text().replace("+", "").replace(" ", "\n"))
        write_text(self / "cgroup.subtree_control", "")

    monkeypatch.setattr(Path, "mkdir", mkdir_like)
    mi, pc = write_tree(tmp_path, [f"30 25 0:27 / {v2} rw - cgroup2 cgroup2 rw"], "0::/service\n")
    setup = cgroups.detect(mi, pc, env_base="")
    assert setup.version == 2 and setup.bases["pids"] == v2 / "grader", setup
    assert (v2 / "grader" / "cgroup.subtree_control").read_text() == "+memory +pids"
    busy_reason = cgroups.detect(mi, pc, env_base=str(v2 / "service"))
    assert busy_reason.version == 0 and "holds processes" in busy_reason.reason
