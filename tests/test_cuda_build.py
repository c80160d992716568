"""Building CUDA solutions without a GPU: the nvcc command, the cache, error messages, flag
checks, the `solve` symbol checks, ctypes argument types and the `compiled` verdict."""

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import HARNESS_SOLUTIONS, STARTERS_96, WRONG_96, grade_json, run_cli
from runner.catalog import find_challenge
from runner.loading import load_challenge
from runner.errors import CompiledOnly, CompileError, EnvironmentNotSupported
from runner.languages import cuda, cuda_abi, cuda_build, cuda_harness, elf_symbols, nvcc
from runner import environment
from runner.policy import BUILD_LOG_BYTES, BUILD_LOG_LINES

HAS_NVCC = shutil.which("nvcc") is not None
needs_nvcc = pytest.mark.skipif(not HAS_NVCC, reason="nvcc is not installed")
CPU = torch.device("cpu")

GOOD = """#include <cstdint>
__global__ void zero(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = 0.0f;
}
extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8,
                      const float* k_scale, const float* v_scale, float* output,
                      int num_heads, int seq_len, int head_dim) {
    zero<<<num_heads, head_dim>>>(output, num_heads * head_dim);
}
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test builds into a private cache (shared within this module, so rebuilds of the
    same source are cache hits) and starts without remembered nvcc facts, as a new process."""
    root = tmp_path_factory.getbasetemp() / "cuda-build-cache"
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(root))
    jobs = tmp_path_factory.getbasetemp() / "cuda-build-jobs"
    jobs.mkdir(exist_ok=True)
    monkeypatch.setenv("GRADER_JOBS_DIR", str(jobs))   # where build folders are made (and removed)
    monkeypatch.setattr(nvcc, "_info_memo", {})
    return root


def leftovers():
    return list((environment.cache_root().parent / "cuda-build-jobs").iterdir())


@pytest.fixture(scope="module")
def challenge():
    return load_challenge(find_challenge("96"), CPU)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


class NvccCalls:
    """Counts nvcc invocations (and checks each is an argument list run without a shell)."""

    def __init__(self, monkeypatch):
        self.commands = []
        real_popen = subprocess.Popen

        def popen(args, *a, **kw):
            assert isinstance(args, list) and not kw.get("shell", False)
            self.commands.append(args)
            return real_popen(args, *a, **kw)

        monkeypatch.setattr(nvcc.subprocess, "Popen", popen)

    @property
    def builds(self):
        return [c for c in self.commands if "-shared" in c]


# -- the command ------------------------------------------------------------------------------

def test_build_command_has_target_defaults_flags_and_output_last(tmp_path):
    target = nvcc.target_for((9, 0))
    cmd = nvcc.build_command("/opt/nvcc", [tmp_path / "a.cu", tmp_path / "h.cpp"],
                             tmp_path / "out.so", target, ["-DX=1"])
    assert cmd[0] == "/opt/nvcc" and cmd[-2:] == ["-o", str(tmp_path / "out.so")]
    for flag in ("-O3", "-lineinfo", "-shared", "-Xcompiler=-fPIC",
                 "-gencode=arch=compute_90a,code=sm_90a"):
        assert flag in cmd
    # user flags come after the defaults (so they can override them), sources after the flags
    assert cmd.index("-DX=1") > cmd.index("-O3") and cmd.index(str(tmp_path / "a.cu")) > cmd.index("-DX=1")


@pytest.mark.parametrize("capability, codes, expected", [
    (None, (), "sm_90a"),                                  # no GPU: Hopper
    ((9, 0), ("sm_80", "sm_90"), "sm_90a"),
    ((8, 0), ("sm_80", "sm_90"), "sm_80"),                 # no arch-specific variant before 9.0
    ((12, 0), ("sm_90", "sm_120"), "sm_120a"),
    ((13, 0), ("sm_90", "sm_120"), "compute_120"),         # newer than nvcc: PTX, JIT by the driver
])
def test_target_follows_the_compute_capability(capability, codes, expected):
    assert nvcc.target_for(capability, codes).name == expected


def test_target_older_than_nvcc_supports_is_refused():
    with pytest.raises(EnvironmentNotSupported, match="older than every target"):
        nvcc.target_for((7, 0), ("sm_75", "sm_80"))


@needs_nvcc
def test_build_runs_nvcc_without_a_shell_for_the_target(tmp_path, monkeypatch):
    calls = NvccCalls(monkeypatch)
    built = cuda_build.build(write(tmp_path, "solution.cu", GOOD + "// unique 1\n"), None,
                       ["-DFROM_CHALLENGE"], ["-DFROM_USER"])
    assert built.library.is_file() and not built.cached and built.target.name == "sm_90a"
    (cmd,) = calls.builds
    assert "-gencode=arch=compute_90a,code=sm_90a" in cmd
    assert cmd.index("-DFROM_CHALLENGE") < cmd.index("-DFROM_USER")
    assert any(arg.endswith(cuda_harness.FILE_NAME) for arg in cmd)
    assert built.library.parent == environment.cache_root() / "cuda-trusted"
    assert not leftovers(), "the build folder was not removed"
    assert not list(built.library.parent.glob(".incoming-*"))


# -- the cache ----------------------------------------------------------------------------------

@needs_nvcc
def test_second_build_of_the_same_file_does_not_call_nvcc(tmp_path, monkeypatch):
    source = write(tmp_path, "solution.cu", GOOD + "// unique 2\n")
    first = cuda_build.build(source, None)
    monkeypatch.setattr(nvcc, "_info_memo", {})   # as a new process would
    calls = NvccCalls(monkeypatch)
    second = cuda_build.build(source, None)
    assert second.cached and second.library == first.library
    assert calls.commands == [], "a cached build ran nvcc"
    # anything in the key changes the library: flags, source bytes
    flagged = cuda_build.build(source, None, user_flags=["-DSOMETHING"])
    source.write_text(GOOD + "// unique 2, edited\n")
    edited = cuda_build.build(source, None)
    assert len({first.library, flagged.library, edited.library}) == 3
    assert len(calls.builds) == 2


def test_cache_key_covers_source_nvcc_target_flags_and_harness(monkeypatch):
    info = nvcc.NvccInfo("nvcc", "Cuda compilation tools, release 13.0, V13.0.88", "13.0.88", ())
    other_info = nvcc.NvccInfo("nvcc", "Cuda compilation tools, release 12.8, V12.8.93", "12.8.93", ())
    hopper, ampere = nvcc.target_for((9, 0)), nvcc.target_for((8, 0))
    base = nvcc.cache_key(b"src", info, hopper, [])
    assert base == nvcc.cache_key(b"src", info, hopper, [])
    variants = [nvcc.cache_key(b"src2", info, hopper, []),
                nvcc.cache_key(b"src", other_info, hopper, []),
                nvcc.cache_key(b"src", info, ampere, []),
                nvcc.cache_key(b"src", info, hopper, ["-DX"])]
    monkeypatch.setattr(cuda_harness, "HARNESS_VERSION", "next")
    variants.append(nvcc.cache_key(b"src", info, hopper, []))
    assert base not in variants and len(set(variants)) == len(variants)


def test_cache_location_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(tmp_path / "mine"))
    assert environment.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("CHALLENGE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert environment.cache_root() == tmp_path / "xdg" / "gpu-challenge-harness"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert environment.cache_root() == Path.home() / ".cache" / "gpu-challenge-harness"


# -- compile errors -------------------------------------------------------------------------

@needs_nvcc
def test_compile_error_names_the_users_file_and_line(tmp_path, challenge):
    path = write(tmp_path, "my_kernel.cu",
                 '#include <cstdint>\nextern "C" void solve(const float* Q) {\n'
                 "    int x = not_declared_anywhere;\n}\n")
    with pytest.raises(CompileError) as info:
        cuda.load(path, challenge, CPU)
    err = info.value
    assert err.verdict == "compile_error"
    assert 'my_kernel.cu(3): error: identifier "not_declared_anywhere" is undefined' in err.message
    assert "my_kernel.cu(3): error" in err.details
    assert str(environment.cache_root()) not in err.details and "/build/" not in err.details
    assert "cuda-build-" not in err.details
    assert "tmpxft" not in err.details


@needs_nvcc
def test_link_error_for_an_undefined_function_is_a_compile_error(tmp_path, challenge):
    path = write(tmp_path, "linker.cu", 'void helper_never_defined();\n'
                                        'extern "C" void solve() { helper_never_defined(); }\n')
    with pytest.raises(CompileError, match="undefined reference to `helper_never_defined"):
        cuda.load(path, challenge, CPU)


@needs_nvcc
def test_long_compiler_output_is_bounded(tmp_path, challenge):
    body = "".join(f"    int v{k} = undefined_{k};\n" for k in range(300))
    path = write(tmp_path, "noisy.cu", f'extern "C" void solve() {{\n{body}}}\n')
    with pytest.raises(CompileError) as info:
        cuda.load(path, challenge, CPU)
    details = info.value.details
    assert len(details.encode()) <= BUILD_LOG_BYTES + 200
    assert len(details.splitlines()) <= BUILD_LOG_LINES + 1
    assert "output cut" in details and "noisy.cu(2): error" in details


def test_bound_keeps_short_text_and_cuts_long_text():
    assert nvcc.bound("a\nb") == "a\nb"
    cut = nvcc.bound("\n".join(f"line {k}" for k in range(100)), max_lines=10)
    assert cut.splitlines()[:10] == [f"line {k}" for k in range(10)]
    assert "cut after 10 of 100 lines" in cut
    huge = nvcc.bound("x" * 100_000, max_bytes=1000)
    assert len(huge) < 1200 and "output cut" in huge


@needs_nvcc
def test_user_flags_reach_nvcc(tmp_path, challenge):
    path = write(tmp_path, "flagged.cu", GOOD + "#ifdef BREAK_ME\n#error broken by a flag\n#endif\n")
    with pytest.raises(CompiledOnly):
        cuda.load(path, challenge, CPU)
    with pytest.raises(CompileError, match="broken by a flag"):
        cuda.load(path, challenge, CPU, extra_flags=["-DBREAK_ME"])


@needs_nvcc
def test_nvcc_timeout_is_a_compile_error(tmp_path, challenge, monkeypatch):
    monkeypatch.setattr(cuda_build, "BUILD_TIMEOUT_S", 0.01)
    with pytest.raises(CompileError, match="took longer than"):
        cuda.load(write(tmp_path, "slow.cu", GOOD + "// unique 3\n"), challenge, CPU)
    assert not leftovers()


def test_missing_nvcc_is_reported_plainly(tmp_path, challenge, monkeypatch):
    monkeypatch.setattr(nvcc.shutil, "which", lambda name: None)
    monkeypatch.setattr(nvcc, "STANDARD_CUDA_HOMES", ())
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    with pytest.raises(EnvironmentNotSupported, match="nvcc \\(the CUDA compiler\\) was not found"):
        cuda.load(write(tmp_path, "s.cu", GOOD), challenge, CPU)


# -- flags --------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [
    ["-o", "/tmp/elsewhere.so"], ["-o=/tmp/x.so"], ["-ofile.so"], ["--output-file=/tmp/x"],
    ["-odir=/tmp"], ["solution.cu"], ["/etc/passwd"], ["-DX\0Y"], [""], ["-c"], ["--compile"],
    ["-ptx"], ["-E"], ["--run"], ["-ccbin=/bin/sh"], ["--compiler-bindir=/tmp"],
    ["-optf=flags.txt"], ["--options-file=f"], ["-Xcompiler=-o,/tmp/x"], ["-Xcompiler", "-B/tmp"],
    ["-Xlinker=--output=/tmp/x"], ["-Xcompiler=-fplugin=/tmp/p.so"], ["-Xcompiler=@flags"],
    ["-Xcompiler"], ["-maxrregcount", "64"], ["--keep"], ["-x=c++"], ["-Xcompiler=-wrapper,sh"],
])
def test_dangerous_or_malformed_flags_are_refused(flags):
    with pytest.raises(CompileError, match="is not allowed"):
        nvcc.validate_flags(flags)


@pytest.mark.parametrize("flags", [
    ["-maxrregcount=64"], ["-Xptxas=-v"], ["-Xptxas", "-v"], ["--use_fast_math"], ["-DFOO=1"],
    ["-Xcompiler", "-Wall"], ["-O2"], ["-lineinfo"], ["-Xlinker=-Bsymbolic"],
    ["--expt-relaxed-constexpr"], ["-std=c++17"], ["-I/usr/include"], ["--optimize=2"],
    ["--resource-usage"], ["-lcublas"],
])
def test_ordinary_flags_are_accepted(flags):
    assert nvcc.validate_flags(flags) == flags


def test_refused_flag_through_the_cli_is_a_compile_error_before_nvcc(capsys, tmp_path):
    source = write(tmp_path, "flags.cu", GOOD + "// unique 5\n")
    before = set(nvcc.cuda_cache_dir().glob("*.so"))
    code, result, _ = grade_json(capsys, "96", "--solution", source, "--device", "cpu",
                                 "--nvcc-flag=-o", "--nvcc-flag=/tmp/x.so")
    assert code == 1 and result["verdict"] == "compile_error"
    assert "'-o' is not allowed" in result["message"]
    assert set(nvcc.cuda_cache_dir().glob("*.so")) == before, "nvcc ran"


# -- the solve symbol -----------------------------------------------------------------------

def test_argtypes_follow_the_signature(challenge):
    types = cuda_abi.argtypes(challenge.get_solve_signature())
    assert types == [ctypes.c_void_p] * 6 + [ctypes.c_int] * 3
    signature = {"x": (ctypes.POINTER(ctypes.c_uint16), "in"), "alpha": (ctypes.c_float, "in"),
                 "n": (ctypes.c_size_t, "in"), "y": (ctypes.POINTER(ctypes.c_float), "out")}
    assert cuda_abi.argtypes(signature) == [ctypes.c_void_p, ctypes.c_float, ctypes.c_size_t,
                                            ctypes.c_void_p]
    x, y = torch.zeros(4, dtype=torch.int16), torch.zeros(3)
    values = cuda_abi.c_arguments(signature, {"y": y, "n": 7, "alpha": 0.5, "x": x})
    assert values == [x.data_ptr(), 0.5, 7, y.data_ptr()]
    assert (cuda_abi.c_declaration(signature)
            == 'extern "C" void solve(const uint16_t* x, float alpha, uint64_t n, float* y)')


def test_c_declaration_of_challenge_96(challenge):
    assert cuda_abi.c_declaration(challenge.get_solve_signature()) == (
        'extern "C" void solve(const float* Q, const int8_t* K_int8, const int8_t* V_int8, '
        'const float* k_scale, const float* v_scale, float* output, int num_heads, '
        'int seq_len, int head_dim)')


@pytest.mark.parametrize("symbol, name", [
    ("_Z5solvePKfS0_Pfiii", "solve"), ("_ZN6kernel5solveEPKfi", "solve"),
    ("_ZNK3Foo3barEv", "bar"), ("solve", "solve"), ("_Z6solverv", "solver"),
])
def test_plain_name_of_mangled_symbols(symbol, name):
    assert cuda_abi.plain_name(symbol) == name


@pytest.mark.parametrize("exported, expected", [
    (["_Z5solvePKfi", cuda_harness.LAST_ERROR], "has C++ linkage"),
    (["slove"], "did you mean `slove`? Rename it"),
    (["Solve"], "did you mean `Solve`?"),
    (["_Z5solv_PKf"], "did you mean `solv_`? Rename it (and give it C linkage)"),
    (["attention", cuda_harness.LAST_ERROR, cuda_harness.SET_DEVICE], "defines no exported function `solve`"),
])
def test_solve_symbol_problems_are_explained(exported, expected, challenge):
    with pytest.raises(CompileError) as info:
        cuda_abi.check_exports(exported, "mine.cu", challenge.get_solve_signature())
    assert expected in info.value.message
    assert 'extern "C" void solve(const float* Q' in info.value.message


def test_unreadable_library_skips_the_symbol_check(tmp_path, challenge):
    junk = write(tmp_path, "junk.so", "not an ELF file")
    assert elf_symbols.exported_functions(junk) is None
    cuda_abi.check_exports(None, "x.cu", challenge.get_solve_signature())   # no exception


@needs_nvcc
@pytest.mark.parametrize("source, expected", [
    ('void solve(const float* Q, int n) {}\n', "has C++ linkage (it is exported as the mangled "
                                               "name `_Z5solvePKfi`)"),
    ('extern "C" void slove(const float* Q, int n) {}\n', "did you mean `slove`?"),
    ('extern "C" void other(const float* Q, int n) {}\n', "defines no exported function `solve`"),
    ('static void solve(const float* Q, int n) {}\nextern "C" void f() { solve(0, 0); }\n',
     "defines no exported function `solve`"),
])
def test_solve_symbol_is_checked_in_the_built_library(tmp_path, challenge, source, expected):
    with pytest.raises(CompileError) as info:
        cuda.load(write(tmp_path, "sym.cu", source), challenge, CPU)
    assert expected in info.value.message and 'extern "C"' in info.value.message


@needs_nvcc
def test_elf_reader_finds_exported_functions(tmp_path):
    built = cuda_build.build(write(tmp_path, "solution.cu", GOOD + "// unique 4\n"), None)
    names = elf_symbols.exported_functions(built.library)
    assert "solve" in names and set(cuda_harness.SYMBOLS) <= set(names)
    assert not any(n.startswith("cudaMalloc") for n in names), "the static CUDA runtime leaked"


# -- verdicts without a GPU -----------------------------------------------------------------

@needs_nvcc
@pytest.mark.parametrize("path", [STARTERS_96 / "starter.cu",
                                  HARNESS_SOLUTIONS / "cuda_correct.cu",
                                  WRONG_96 / "no_k_scale.cu",
                                  HARNESS_SOLUTIONS / "cuda_bad_launch.cu"])
def test_shipped_cuda_files_compile(path, challenge):
    with pytest.raises(CompiledOnly) as info:
        cuda.load(path, challenge, CPU)
    assert info.value.verdict == "compiled"
    assert "running it needs a GPU" in info.value.message and path.name in info.value.message


@needs_nvcc
def test_cli_reports_compiled_and_exits_zero(tmp_path):
    proc = run_cli("96", "--solution", STARTERS_96 / "starter.cu", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "compiled" and result["status"] == "success"
    assert "sm_90a" in result["message"] and "needs a GPU" in result["message"]
    assert "NOT checked" in result["message"]
    text = run_cli("96", "--solution", STARTERS_96 / "starter.cu", "--device", "cpu")
    assert text.returncode == 0
    last = text.stdout.strip().splitlines()[-1]
    assert last.startswith("Verdict: COMPILED ONLY, NOTHING CHECKED") and "no test ran" in last


@needs_nvcc
def test_cli_compile_error_exits_one_with_the_users_line(tmp_path):
    path = write(tmp_path, "broken.cu", GOOD.replace("out[i] = 0.0f;", "out[i] = missing_value;"))
    proc = run_cli("96", "--solution", path, "--device", "cpu", "--json")
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and result["verdict"] == "compile_error"
    assert "broken.cu(4): error" in result["message"], result["message"]
