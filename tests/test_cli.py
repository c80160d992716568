"""The CLI end to end on the CPU path: accepted solutions, wrong ones, and bad input."""

import json

import pytest
import torch

from helpers import (CHALLENGE_96, HARNESS_SOLUTIONS, REFERENCE_96, REPO, STARTERS_96, WRONG_96,
                     grade_json, run_cli)

REFERENCE_98 = REPO / "challenges" / "hard" / "98_paged_int8_decode_attention" / "reference"


def test_pytorch_reference_solution_is_accepted_on_submit(capsys):
    code, result, err = grade_json(capsys, "96", "--solution",
                                   REFERENCE_96 / "solution.pytorch.py", "--action", "submit")
    assert code == 0, result
    assert result["status"] == "success" and result["verdict"] == "accepted"
    assert len(result["tests"]) == 14 and all(t["passed"] for t in result["tests"])  # 13 + perf
    for test in result["tests"]:
        assert test["max_abs_error"] < 1e-3 and test["mismatches"] == 0
    assert result["performance"]["timed"] is False or result["device"] != "cpu"


def test_triton_reference_solution_is_accepted_on_run(capsys):
    code, result, _ = grade_json(capsys, "96", "--solution", REFERENCE_96 / "solution.triton.py")
    assert code == 0 and result["verdict"] == "accepted"
    assert result["language"] == "triton" and result["tests"][0]["name"] == "example"


@pytest.mark.slow
def test_triton_reference_solution_is_accepted_on_submit(capsys):
    code, result, _ = grade_json(capsys, "96", "--solution", REFERENCE_96 / "solution.triton.py",
                                 "--action", "submit")
    assert code == 0, result["message"]
    assert len(result["tests"]) == 14   # 13 functional tests and the performance case


@pytest.mark.slow
def test_a_large_performance_case_is_left_out_under_the_triton_interpreter(capsys):
    """98's performance case (over 500 MiB) would take Triton's CPU interpreter minutes; 96's
    (67 MiB, above) is still run."""
    if torch.cuda.is_available():
        pytest.skip("on a GPU the performance case is run and timed")
    code, result, _ = grade_json(capsys, "98", "--solution",
                                 REFERENCE_98 / "solution.triton.py",
                                 "--action", "submit")
    assert code == 0 and result["verdict"] == "accepted", result["message"]
    assert [t["name"] for t in result["tests"]] == [f"test {i}" for i in range(1, 15)]
    perf = result["performance"]
    assert perf["timed"] is False and "performance case was left out" in perf["reason"]
    # a PyTorch solution of the same challenge still runs it
    code, result, _ = grade_json(capsys, "98", "--solution",
                                 REFERENCE_98 / "solution.pytorch.py",
                                 "--action", "submit")
    assert code == 0 and result["tests"][-1]["name"] == "performance"


@pytest.mark.parametrize("solution, expected_in_message", [
    ("no_max.pytorch.py", "test 10"),
    ("swapped_scales.pytorch.py", "differ by more than"),
    ("first_head_only.pytorch.py", "got nan"),
    ("writes_input.pytorch.py", "modified the input `k_scale`"),
    ("out_of_bounds.pytorch.py", "256 bytes past the end of `output`"),
    ("first_value_row.triton.py", "differ by more than"),
])
def test_wrong_solutions_are_rejected_with_a_useful_message(capsys, solution, expected_in_message):
    code, result, _ = grade_json(capsys, "96", "--solution", WRONG_96 / solution,
                                 "--action", "submit")
    assert code == 1
    assert result["status"] == "error" and result["verdict"] == "wrong_answer"
    assert expected_in_message in result["message"]
    failed = [t for t in result["tests"] if not t["passed"]]
    assert failed and failed[0]["message"]


def test_wrong_answer_reports_worst_element_and_tolerance(capsys):
    code, result, _ = grade_json(capsys, "96", "--solution",
                                 WRONG_96 / "swapped_scales.pytorch.py", "--action", "run")
    test = result["tests"][0]
    assert not test["passed"] and test["mismatches"] > 0 and test["total"] == 16
    worst = test["worst"]
    assert set(worst) >= {"index", "got", "expected", "abs_error", "rel_error"}
    assert abs(worst["got"] - worst["expected"]) == pytest.approx(worst["abs_error"], rel=1e-6)
    assert "atol=0.001" in result["message"] and "rtol=0.001" in result["message"]
    assert test["params"] == {"num_heads": 2, "seq_len": 3, "head_dim": 8}


def test_answer_cached_by_shape_fails_on_fresh_inputs(capsys):
    code, result, _ = grade_json(capsys, "96", "--solution",
                                 WRONG_96 / "cached_by_shape.pytorch.py", "--action", "submit")
    assert code == 1 and result["verdict"] == "wrong_answer"
    # on the CPU the fresh-inputs check catches it; on a GPU the rotated timing copies do first
    assert ("did not follow new inputs" in result["message"]
            or "cached by shape or pointer" in result["message"])


@pytest.mark.parametrize("solution, verdict, expected_in_message", [
    ("syntax_error.pytorch.py", "compile_error", "syntax error in syntax_error.pytorch.py line 1"),
    ("import_error.pytorch.py", "compile_error", "flash_attn_not_installed_anywhere"),
    ("no_solve.pytorch.py", "compile_error", "defines no function `solve`"),
    ("wrong_signature.pytorch.py", "compile_error",
     "takes (Q, K, V, k_scale, v_scale, output, num_heads, seq_len): 8 parameter(s), but the "
     "challenge passes 9 arguments"),
    ("raises.pytorch.py", "runtime_error", "`solve` raised KeyError"),
])
def test_broken_submissions_get_a_verdict_not_a_traceback(capsys, solution, verdict,
                                                           expected_in_message):
    code, result, err = grade_json(capsys, "96", "--solution", HARNESS_SOLUTIONS / solution)
    assert code == 1
    assert result["verdict"] == verdict and result["status"] == "error"
    assert expected_in_message in result["message"]
    assert "runner/" not in result["details"]  # only the user's frames


def test_runtime_error_shows_the_users_frames(capsys):
    _, result, _ = grade_json(capsys, "96", "--solution", HARNESS_SOLUTIONS / "raises.pytorch.py")
    assert "raises.pytorch.py" in result["details"] and "helper" in result["details"]
    assert "line 2" in result["details"]


def test_starters_are_rejected_as_wrong_answer(capsys):
    for starter in ("starter.pytorch.py", "starter.triton.py"):
        code, result, _ = grade_json(capsys, "96", "--solution", STARTERS_96 / starter)
        assert code == 1 and result["verdict"] == "wrong_answer", starter


def test_json_output_is_exactly_one_object_on_stdout():
    proc = run_cli("96", "--solution", REFERENCE_96 / "solution.pytorch.py", "--json")
    assert proc.returncode == 0
    result = json.loads(proc.stdout)
    assert {"status", "verdict", "tests", "message", "challenge", "language"} <= set(result)
    assert "no CUDA GPU found" in proc.stderr or result["device"] != "cpu"


def test_human_report(capsys):
    from runner.cli import main
    code = main(["96", "--solution", str(REFERENCE_96 / "solution.pytorch.py")])
    out = capsys.readouterr().out
    assert code == 0 and "Verdict: ACCEPTED" in out and "[PASS] example" in out


@pytest.mark.parametrize("argv, expected", [
    (["97_int8_kv_cache_atention"], "no challenge matches"),
    (["int8_kv_cache_atention"], "Did you mean: 96_int8_kv_cache_attention"),
    (["96", "--solution", "nowhere/solution.triton.py"], "--action init --language triton"),
    (["96", "--solution", "x.py"], "cannot tell the language"),
    (["96", "--language", "fortran", "--solution", "x.cu"], "unknown language 'fortran'"),
    (["96", "--action", "init"], "needs --language"),
    (["96", "--timeout", "0"], "--timeout 0 is not a limit"),
    (["96", "--timeout", "-5"], "--timeout -5 is not a limit"),
    (["96", "--memory-limit", "0"], "--memory-limit 0 is not a limit"),
    (["96", "--solution", "challenges/medium/96_int8_kv_cache_attention/reference"],
     "is a folder: name the solution file in it (it holds solution.cu"),
    (["96", "--solution", "challenges"], "--solution challenges is a folder"),
    (["96", "--seed", "x"], "argument --seed: invalid int value"),
    (["96", "--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_usage_errors_exit_2_with_one_line(argv, expected):
    proc = run_cli(*argv)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""
    with_json = run_cli(*argv, "--json")
    assert with_json.returncode == 2, with_json.stderr
    result = json.loads(with_json.stdout)         # the one object the README promises
    assert result["status"] == "error" and result["verdict"] == "usage_error"
    assert expected in result["message"]


def test_challenge_by_number_slug_and_path(capsys, repo):
    folder = repo / "challenges/medium/96_int8_kv_cache_attention"
    for name in ("96", "int8_kv_cache_attention", str(folder)):
        code, result, _ = grade_json(capsys, name, "--solution", REFERENCE_96 / "solution.pytorch.py")
        assert code == 0 and result["challenge"] == "96_int8_kv_cache_attention"


def test_init_copies_the_starter_and_never_overwrites(tmp_path, capsys):
    from runner.cli import main
    target = tmp_path / "mine.triton.py"
    assert main(["96", "--action", "init", "--language", "triton", "--solution", str(target)]) == 0
    assert target.read_text() == (STARTERS_96 / "starter.triton.py").read_text()
    target.write_text("# my work\n")
    assert main(["96", "--action", "init", "--language", "triton", "--solution", str(target)]) == 0
    assert target.read_text() == "# my work\n"
    assert "already exists" in capsys.readouterr().err


def test_default_solution_path_is_the_challenge_solution_folder(tmp_path, capsys):
    import shutil
    from runner.cli import main
    challenge_dir = tmp_path / "medium" / "96_int8_kv_cache_attention"
    # only the challenge's own files: never what a learner has put in its solution/ folder
    shutil.copytree(CHALLENGE_96, challenge_dir,
                    ignore=shutil.ignore_patterns("solution", "__pycache__"))
    assert not (challenge_dir / "solution").exists()
    assert main([str(challenge_dir), "--action", "init", "--language", "pytorch"]) == 0
    assert (challenge_dir / "solution" / "solution.pytorch.py").is_file()
    code = main([str(challenge_dir), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["verdict"] == "wrong_answer"  # the starter does nothing


def test_several_solutions_in_the_folder_ask_for_a_choice(tmp_path, capsys):
    import shutil
    from runner.cli import main
    challenge_dir = tmp_path / "medium" / "96_int8_kv_cache_attention"
    shutil.copytree(CHALLENGE_96, challenge_dir,
                    ignore=shutil.ignore_patterns("solution", "__pycache__"))
    for language in ("pytorch", "triton"):
        assert main([str(challenge_dir), "--action", "init", "--language", language]) == 0
    assert main([str(challenge_dir)]) == 2
    assert "several solutions" in capsys.readouterr().err


def test_progress_says_still_during_a_silent_step():
    import time
    from runner.cli import Progress
    lines = []
    with Progress(lines.append, quiet_s=0.2, every_s=0.3) as progress:
        progress("timing")
        deadline = time.monotonic() + 60
        while len(lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert lines[0] == "... timing"
    assert lines[1].startswith("... still timing (") and lines[1].endswith(" s)")
    count = len(lines)
    time.sleep(0.5)
    assert len(lines) == count          # none after the step's end


def test_the_verdict_is_last_after_the_solutions_output_cut(tmp_path):
    solution = tmp_path / "chatty.pytorch.py"
    solution.write_text(
        "import torch\n"
        "def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):\n"
        "    for k in range(2310):\n"
        "        print(f'line {k}')\n")
    proc = run_cli("96", "--solution", solution)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("Verdict: WRONG ANSWER")
    assert "line 0" in proc.stdout and "line 2309" in proc.stdout     # the head and the tail
    assert "line 1000" not in proc.stdout
    assert any("lines (" in line and "of your output cut here" in line for line in lines)
    assert len(lines) < 60


def test_the_report_renders_the_verdict_last_even_with_details():
    from runner.report import Result, TestReport, render_text
    result = Result(verdict="compile_error", message="syntax error in x.py line 3",
                    details="  File x.py, line 3\n    def (\n", logs="hello\n" * 3,
                    tests=[TestReport(name="example", passed=False, message="boom")])
    text = render_text(result)
    assert text.splitlines()[-1] == "Verdict: COMPILE ERROR: syntax error in x.py line 3"
    assert text.index("hello") < text.index("def (") < text.index("[FAIL]")


def test_a_compiled_verdict_says_plainly_that_nothing_was_checked():
    from runner.report import Result, render_text
    result = Result(verdict="compiled", message="solution.cu compiled for sm_90a with nvcc 13.0 "
                    "and exports `solve` with the signature's parameters, but no test ran: its "
                    "results and speed were NOT checked; running it needs a GPU")
    assert result.status == "success"
    last = render_text(result).splitlines()[-1]
    assert last.startswith("Verdict: COMPILED ONLY, NOTHING CHECKED: ") and "NOT checked" in last


def test_triton_on_the_cpu_gets_a_longer_default_time_limit():
    from runner.cli import default_timeout
    from runner.sandbox.limits import Limits
    assert default_timeout("triton", "cpu") == 1200 > Limits().timeout_s
    assert default_timeout("triton", "cuda") is None and default_timeout("pytorch", "cpu") is None


def test_a_remote_result_names_the_users_file_not_the_workers_copy():
    from runner.judge.client import with_users_path

    output = {"verdict": "compile_error",
              "message": "syntax error in solution.triton.py line 3: expected ':'",
              "details": 'File "/tmp/judge-job-x1/solution.triton.py", line 3\n'
                         'also /tmp/a/mine.triton.py(3) and solution.triton.pyc and xsolution.triton.py',
              "tests": []}
    fixed = with_users_path(output, "triton", "mine.triton.py", "work/mine.triton.py")
    assert fixed["message"] == "syntax error in work/mine.triton.py line 3: expected ':'"
    assert fixed["details"] == ('File "work/mine.triton.py", line 3\nalso work/mine.triton.py(3) '
                                'and solution.triton.pyc and xsolution.triton.py')
    assert fixed["tests"] == [] and output["message"].startswith("syntax error in solution")
