"""The trusted side's CUDA build (issue 24): nvcc runs in a jail of its own, only the grader's
own process writes the library cache, and no jail sees that cache.

The hostile builds use a fake "compiler" (a shell script in the build jail): real nvcc runs no
code of the submission's, so these test the mechanism, what the parent does with whatever the
build jail leaves in its output folder."""

import io
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import grade_json
from runner.grader import grade as grade_module
from runner.errors import CompileError
from runner.languages import cuda, cuda_build, nvcc
from runner import environment
from runner.policy import BUILD_LOG_BYTES
from runner.sandbox import jail, parent
from runner.sandbox.limits import Limits

HAS_NVCC = shutil.which("nvcc") is not None
needs_nvcc = pytest.mark.skipif(not HAS_NVCC, reason="nvcc is not installed")
needs_bwrap = pytest.mark.skipif(not jail.probe()[0], reason="bubblewrap cannot run here")
FAKE_NVCC = nvcc.NvccInfo("/usr/bin/true", "fake nvcc, release 0.0, V0.0.1", "0.0.1", ())
GOOD = """#include <cstdint>
extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {}
"""


@pytest.fixture(autouse=True)
def private_folders(tmp_path, monkeypatch):
    """A private cache and jobs folder per test, and nvcc's facts forgotten (a new process)."""
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "jobs").mkdir()
    monkeypatch.setenv("GRADER_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setattr(nvcc, "_info_memo", {})


def source(tmp_path, text=GOOD, name="solution.cu"):
    path = tmp_path / "src" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def fake_compiler(monkeypatch, script):
    """The build runs ``sh -c script sh OUTPUT`` (in the build jail) instead of nvcc."""
    monkeypatch.setattr(nvcc, "nvcc_info", lambda path=None: FAKE_NVCC)
    monkeypatch.setattr(cuda_build, "compiler_command",
                        lambda nvcc_path, sources, output, target, flags:
                        ["/bin/sh", "-c", script, "sh", output])


def cached_libraries():
    return sorted(nvcc.cuda_cache_dir().glob("*"))


# -- what the build jail may leave: refused with a clear compile error ---------------------------

@needs_bwrap
@pytest.mark.parametrize("script, why", [
    ('ln -s "$HOST" "$1"', "is a symbolic link, not a file; refused"),
    ('printf real > "$(dirname "$1")/real.so"; ln -s real.so "$1"', "is a symbolic link"),
    ('mkfifo "$1"', "is not a regular file; refused"),
    ('mkdir "$1"', "is not a regular file; refused"),
    ('head -c 3000000 /dev/zero > "$1"', "is larger than 1 MiB; refused"),
    ('true', "the build produced no library"),
])
def test_what_the_build_jail_leaves_is_refused(tmp_path, monkeypatch, script, why):
    host = tmp_path / "host-secret.txt"
    host.write_text("the host's file\n")
    monkeypatch.setattr(cuda_build, "BUILD_MAX_LIBRARY_BYTES", 2**20)
    fake_compiler(monkeypatch, script.replace("$HOST", str(host)))
    with pytest.raises(CompileError) as info:
        cuda_build.build(source(tmp_path, name="mine.cu"), None)
    assert info.value.message.startswith("mine.cu did not compile: ") and why in info.value.message
    assert host.read_text() == "the host's file\n" and not host.is_symlink()
    assert not [p for p in cached_libraries() if p.suffix == ".so"], "something was cached"
    assert not list(nvcc.cuda_cache_dir().glob(".incoming-*"))
    assert not list((tmp_path / "jobs").iterdir()), "the build folder was left behind"


def test_without_a_jail_what_the_build_leaves_is_still_checked(tmp_path, monkeypatch):
    host = tmp_path / "host-secret.txt"
    host.write_text("the host's file\n")
    fake_compiler(monkeypatch, f'ln -s {host} "$1"')
    with pytest.raises(CompileError, match="is a symbolic link, not a file; refused"):
        cuda_build.build(source(tmp_path), None, sandbox="off")
    fake_compiler(monkeypatch, 'echo library > "$1"')
    built = cuda_build.build(source(tmp_path), None, sandbox="off")
    assert built.library.read_bytes() == b"library\n" and built.command[0] == "/bin/sh"
    assert built.notes == ["the CUDA build was not isolated: no sandbox was asked for"]
    assert host.read_text() == "the host's file\n"
    assert not list((tmp_path / "jobs").iterdir())


@needs_bwrap
def test_the_build_jail_cannot_write_or_see_anything_of_the_host(tmp_path, monkeypatch):
    host = tmp_path / "host-secret.txt"
    host.write_text("the host's file\n")
    cache = nvcc.cuda_cache_dir()
    planted = cache / "0123.so"
    script = (f'echo pwned > {host} && echo WROTE-HOST; '
              f'test -e {cache} && echo SEES-CACHE; '
              f'echo pwned > {planted} && echo WROTE-CACHE; '
              f'echo pwned > /build/src/solution.cu && echo WROTE-SOURCE; '
              f'echo pwned > /usr/pwned && echo WROTE-USR; '
              f'(cat /etc/passwd | grep -q root) && echo SEES-PASSWD; '
              f'echo library > "$1"')
    fake_compiler(monkeypatch, script)
    built = cuda_build.build(source(tmp_path), None)
    for marker in ("WROTE-HOST", "SEES-CACHE", "WROTE-CACHE", "WROTE-SOURCE", "WROTE-USR",
                   "SEES-PASSWD"):
        assert marker not in built.log, built.log
    assert host.read_text() == "the host's file\n" and not planted.exists()
    # what it did leave, a regular file, is what the parent cached under the key
    assert built.library.read_bytes() == b"library\n" and built.library.parent == cache
    assert not built.cached and built.command[0] == jail.bwrap_path()


@needs_bwrap
def test_nothing_of_the_build_outlives_it(tmp_path, monkeypatch):
    """The compiler's exit ends the build jail's PID namespace: a process it left behind
    cannot swap the library after the parent's checks."""
    marker = f"{os.getpid() % 1000 + 1}.{time.time_ns() % 10**6}"
    fake_compiler(monkeypatch, f'echo library > "$1"; (sleep {marker}; ln -sf /etc/shadow "$1") &')
    built = cuda_build.build(source(tmp_path), None)
    assert built.library.read_bytes() == b"library\n"
    time.sleep(0.2)
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                alive.append(pid)
        except OSError:
            pass
    assert not alive, "a process of the build jail is still running"


@needs_bwrap
def test_a_hanging_compiler_is_a_compile_error_after_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(cuda_build, "BUILD_TIMEOUT_S", 0.5)
    fake_compiler(monkeypatch, 'sleep 60; echo library > "$1"')
    started = time.monotonic()
    with pytest.raises(CompileError, match="took longer than 0 s to build slow.cu and was stopped"):
        cuda_build.build(source(tmp_path, name="slow.cu"), None)
    assert time.monotonic() - started < 15
    assert not list((tmp_path / "jobs").iterdir())


@needs_bwrap
def test_the_compilers_output_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(cuda_build, "BUILD_MAX_CAPTURE_BYTES", 100_000)
    fake_compiler(monkeypatch, 'head -c 20000000 /dev/zero | tr "\\0" "x"; exit 1')
    with pytest.raises(CompileError) as info:
        cuda_build.build(source(tmp_path, name="loud.cu"), None)
    assert len(info.value.details.encode()) <= BUILD_LOG_BYTES + 300
    assert "nvcc exited with code 1" in info.value.message


def test_the_output_folder_itself_is_not_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "solution.so").write_bytes(b"x")
    (tmp_path / "out").symlink_to(real)
    destination = nvcc.cuda_cache_dir() / "key.so"
    with pytest.raises(CompileError, match="output folder could not be opened"):
        cuda_build.collect(tmp_path / "out", "solution.so", destination, "a.cu")
    assert not destination.exists()


def test_removal_of_what_the_build_left_is_fd_based():
    assert shutil.rmtree.avoids_symlink_attacks


# -- the cache -----------------------------------------------------------------------------------

@needs_nvcc
@needs_bwrap
def test_a_jailed_build_is_cached_under_the_key_and_reused_without_nvcc(tmp_path, monkeypatch):
    path = source(tmp_path, GOOD + "// jailed build 1\n")
    first = cuda_build.build(path, None)
    assert not first.cached and first.command[0] == jail.bwrap_path()
    key = nvcc.cache_key(path.read_bytes(), nvcc.nvcc_info(), nvcc.target_for(None), [])
    assert first.library == nvcc.cuda_cache_dir() / f"{key}.so"

    def no_build(*args, **kwargs):
        raise AssertionError("the compiler ran")

    real_run = cuda_build.run_bounded
    monkeypatch.setattr(cuda_build, "run_bounded", no_build)
    monkeypatch.setattr(nvcc, "_info_memo", {})
    again = cuda_build.build(path, None)
    assert again.cached and again.library == first.library
    monkeypatch.setattr(cuda_build, "run_bounded", real_run)
    flagged = cuda_build.build(path, None, user_flags=["-DOTHER"])
    path.write_text(GOOD + "// jailed build 2\n")
    edited = cuda_build.build(path, None)
    assert not flagged.cached and not edited.cached
    assert len({first.library, flagged.library, edited.library}) == 3


def test_no_cache_folder_of_the_host_is_shown_to_a_grading_jail(tmp_path):
    """Every cache of the jailed child (Triton's, CUDA's, XDG's) lies in its own scratch
    tmpfs: none is the host's, so nothing it writes is read by the trusted side or another
    grading."""
    env = parent.child_environment(tmp_path, "cpu", Limits(), jailed=True)
    for key in ("TRITON_CACHE_DIR", "XDG_CACHE_HOME", "CHALLENGE_CACHE_DIR", "HOME"):
        assert env[key].startswith(jail.JAIL_SCRATCH + "/"), (key, env[key])


# -- through a grading ---------------------------------------------------------------------------

@needs_nvcc
@needs_bwrap
def test_a_grading_builds_before_the_child_and_shows_it_only_a_copy(tmp_path, monkeypatch, capsys):
    specs = []
    real_command = jail.command

    def spy(spec, inner, env):
        specs.append((spec, json.loads((spec.job_dir / "job.json").read_text())["job"]))
        return real_command(spec, inner, env)

    monkeypatch.setattr(parent.jail, "command", spy)
    monkeypatch.setenv("GRADER_WARM_START", "0")     # the cold jail (the warm one: below)
    path = source(tmp_path, GOOD + "// through a grading\n")
    code, result, _ = grade_json(capsys, "96", "--solution", path, "--device", "cpu")
    assert code == 0 and result["verdict"] == "compiled", result
    assert "compiled for sm_90a with nvcc" in result["message"]
    (spec, job), = specs
    cache = environment.cache_root()
    shown = [*spec.read_only, *spec.writable]
    assert not any(p == cache or cache in p.parents or p in cache.parents for p in shown), shown
    library = Path(job["library_path"])
    assert library.parent in spec.read_only and library.parent.parent == tmp_path / "jobs"
    assert job["build_info"]["target"] == "sm_90a"
    assert not list((tmp_path / "jobs").iterdir()), "the grading's copy was left behind"

    # the same source again: the cached library, no compiler
    monkeypatch.setattr(cuda_build, "run_bounded",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("the compiler ran")))
    code, result, _ = grade_json(capsys, "96", "--solution", path, "--device", "cpu")
    assert code == 0 and result["verdict"] == "compiled", result


@needs_nvcc
def test_a_warm_jail_gets_the_library_copied_into_its_own_folder(tmp_path, monkeypatch, capsys):
    """The jail started before the build (runner/sandbox/warm.py) shows an empty folder of the
    grading's own at /library, which gets a copy of the built library: never the cache."""
    specs = []
    real_command = jail.command

    def spy(spec, inner, env):
        specs.append(spec)
        return real_command(spec, inner, env)

    monkeypatch.setattr(jail, "command", spy)
    path = source(tmp_path, GOOD + "// through a warm jail\n")
    code, result, _ = grade_json(capsys, "96", "--solution", path, "--device", "cpu")
    assert code == 0 and result["verdict"] == "compiled", result
    (spec,) = specs
    assert "/library" in spec.mapped.values()
    cache = environment.cache_root()
    shown = [*spec.read_only, *spec.writable, *spec.mapped]
    assert not any(p == cache or cache in p.parents or p in cache.parents for p in shown), shown
    assert not list((tmp_path / "jobs").iterdir()), "the grading's folders were left behind"


@needs_nvcc
def test_without_a_sandbox_the_grader_still_builds_and_the_solution_loads_the_copy(
        tmp_path, monkeypatch, capsys):
    loaded = []
    real_prebuilt = cuda.prebuilt

    def spy(library_path, build_info):
        loaded.append(library_path)
        return real_prebuilt(library_path, build_info)

    monkeypatch.setattr(cuda, "prebuilt", spy)
    path = source(tmp_path, GOOD + "// no sandbox\n")
    code, result, _ = grade_json(capsys, "96", "--solution", path, "--device", "cpu",
                                 "--no-sandbox")
    assert code == 0 and result["verdict"] == "compiled", result
    (library,) = loaded
    assert Path(library).parent.parent == tmp_path / "jobs"
    assert not list((tmp_path / "jobs").iterdir()), "the grading's copy was left behind"
    assert list(nvcc.cuda_cache_dir().glob("*.so"))


@needs_nvcc
@needs_bwrap
def test_a_compile_error_is_decided_without_starting_the_child(tmp_path, monkeypatch, capsys):
    def no_child(*args, **kwargs):
        raise AssertionError("the grading child was started")

    monkeypatch.setattr(grade_module, "run_in_child", no_child)
    path = source(tmp_path, '#include <cstdint>\nextern "C" void solve(const float* Q) {\n'
                            "    int x = not_declared_anywhere;\n}\n", name="broken_kernel.cu")
    code, result, _ = grade_json(capsys, "96", "--solution", path, "--device", "cpu")
    assert code == 1 and result["verdict"] == "compile_error" and result["status"] == "error"
    assert result["message"].startswith("broken_kernel.cu did not compile: broken_kernel.cu(3): "
                                        'error: identifier "not_declared_anywhere" is undefined')
    assert "broken_kernel.cu(3): error" in result["details"]
    for text in (result["message"], result["details"]):
        assert "/build/" not in text and str(tmp_path) not in text and "tmpxft" not in text
    assert {"status", "verdict", "message", "details", "tests", "notes", "logs"} <= set(result)
    assert not list((tmp_path / "jobs").iterdir())


@needs_nvcc
@needs_bwrap
def test_a_judge_job_builds_into_its_slots_cache(tmp_path, monkeypatch):
    """The judge's job process is the trusted side: the library lands in the slot's cache
    folder, and the next job of the slot reuses it."""
    from runner.judge.worker import jobrun

    slot_cache = tmp_path / "judge-cache-cpu0"
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(slot_cache))
    spec = {"job": {"language": "cuda", "content": GOOD + "// judge job\n", "challenge": "96",
                    "action": "run", "seed": 1},
            "timeLimitSeconds": 120, "hostMemoryBytes": 8 * 2**30, "device": "cpu",
            "sandbox": "require"}
    result = jobrun.run(spec, io.StringIO())
    assert result["verdict"] == "compiled", result
    libraries = list((slot_cache / nvcc.CACHE_FOLDER).glob("*.so"))
    assert len(libraries) == 1
    monkeypatch.setattr(cuda_build, "run_bounded",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("the compiler ran")))
    assert jobrun.run(spec, io.StringIO())["verdict"] == "compiled"
