"""Every shell command shown in README.md and docs/*.md runs as written (on a copy of the
repository), so the docs cannot drift from the code.

Each ```bash block runs as one script, in order (an `export` holds for the rest of its block).
A command marked `(GPU only)` in its comment is skipped. A few cannot run inside the tests, and
are checked another way instead: the `pip install` lines and the test commands are the ones
.ci/run runs; LeetGPU's repository is not cloned: the test's HOME holds a stand-in checkout of
the same layout at ~/leetgpu-challenges (a copy of tests/fixtures/leetgpu), where `git clone`
would put it. `serve` runs in the background,
on a free port instead of 8000, until the next `serve` or the end of its block; it must answer
/healthz and stop cleanly on SIGTERM. Every other command must exit 0, except a grading that ends in a
verdict (exit 1, e.g. an unedited starter's wrong answer); a usage error (2) or a traceback
fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LEETGPU_CLONE = re.compile(r"^git clone https://github\.com/AlphaGPU/leetgpu-challenges (\S+)$")
DOC_TOKENS = {"JUDGE_AUTHOR_TOKEN": "doc-author-token-0123456789abcdef",
              "JUDGE_WORKER_TOKEN": "doc-worker-token-0123456789abcdef",
              "JUDGE_ADMIN_TOKEN": "doc-admin-token-0123456789abcdef0"}


@dataclass
class Command:
    text: str             # the command, without its comment
    comment: str
    where: str            # file:line

    @property
    def kind(self) -> str:
        if "gpu only" in self.comment.lower():
            return "gpu"
        if self.comment.startswith("checked by tests/"):
            return "elsewhere"
        if self.text.startswith("pip install") or " && pip install" in self.text:
            return "install"
        if re.match(r"python -m pytest\b", self.text):
            return "tests"
        if re.search(r"run_challenge\.py serve\b", self.text):
            return "serve"
        return "run"


def strip_comment(line: str) -> tuple[str, str]:
    """(command, comment): a `#` outside quotes that starts a word begins the comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip(), line[i + 1:].strip()
    return line.strip(), ""


# an HTML comment right before a block that cannot run here (it needs another project's own
# program) names the test that checks the same thing; that test must exist
ELSEWHERE = re.compile(r"<!-- doc-commands: checked by (tests/\S+\.py)\b.*-->")


def bash_blocks(path: Path) -> List[List[Command]]:
    """The commands of each ```bash block of ``path``, in order (a line ending in a backslash
    continues on the next)."""
    blocks, current, start, elsewhere, previous = [], None, 0, None, ""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        fence = line.strip()
        if current is None and re.fullmatch(r"```(bash|sh|shell)", fence):
            current, start = [], number
            marker = ELSEWHERE.search(previous)
            elsewhere = marker.group(1) if marker else None
        elif current is not None and fence == "```":
            blocks.append(current)
            current = None
        elif current is not None:
            text, comment = strip_comment(line)
            if elsewhere:
                comment = f"checked by {elsewhere} {comment}".strip()
            if current and current[-1].text.endswith("\\"):
                current[-1].text = current[-1].text[:-1].rstrip() + " " + text
                current[-1].comment = (current[-1].comment + " " + comment).strip()
            elif text:
                current.append(Command(text, comment, f"{path.name}:{number}"))
            elif comment and current:            # a comment continuing the previous line's
                current[-1].comment += " " + comment
        if fence:
            previous = fence
    assert current is None, f"{path.name}:{start}: a code block is not closed"
    return [block for block in blocks if block]


ALL = [(path, k, block) for path in DOCS for k, block in enumerate(bash_blocks(path))]


def test_the_docs_show_commands_and_the_parser_reads_them():
    kinds = {c.kind for _, _, block in ALL for c in block}
    assert {"install", "tests", "serve", "run"} <= kinds
    sample = bash_blocks_from_text('```bash\npython x.py --a "b # c"   # note\n'
                                   'nvidia-smi                    # GPU only\n'
                                   '                              # more of the note\n```\n')
    assert [(c.text, c.kind) for c in sample] == [('python x.py --a "b # c"', "run"),
                                                   ("nvidia-smi", "gpu")]
    assert sample[1].comment == "GPU only more of the note"
    joined = bash_blocks_from_text('```bash\nA=1 \\\n    python y.py   # why\n```\n')
    assert [(c.text, c.comment) for c in joined] == [("A=1 python y.py", "why")]
    marked = bash_blocks_from_text('<!-- doc-commands: checked by tests/test_x.py -->\n'
                                   '```bash\nother-project --go\n```\n')
    assert [c.kind for c in marked] == ["elsewhere"]
    for _, _, block in ALL:
        for command in block:
            if command.kind == "elsewhere":
                named = command.comment.split()[2]
                assert (REPO / named).is_file(), f"{command.where}: {named} does not exist"


def bash_blocks_from_text(text: str) -> List[Command]:
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".md") as f:
        f.write(text)
        f.flush()
        return [c for block in bash_blocks(Path(f.name)) for c in block]


def test_install_and_test_commands_are_the_ones_ci_runs():
    """.ci/run installs what the docs install (the same torch, extras that .[dev] includes)
    and runs the docs' test commands."""
    import tomllib

    ci = (REPO / ".ci" / "run").read_text().replace('"', "")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed_by_ci = {"dev"} | {extra.strip() for d in extras["dev"]
                                 if d.startswith("gpu-challenge-harness[")
                                 for extra in d[d.index("[") + 1:d.index("]")].split(",")}
    assert "python -m pip install --quiet -e .[dev]" in ci
    for _, _, block in ALL:
        for command in block:
            if command.kind == "install":
                for part in command.text.replace('"', "").split("&&"):
                    spec = part.strip().removeprefix("pip install ").strip()
                    extra = re.fullmatch(r"-e \.\[(\w+)\]", spec)
                    cpu_only = re.fullmatch(r"(torch==\S+) --index-url " + re.escape(CPU_INDEX), spec)
                    if cpu_only:   # the no-GPU install (PyTorch's own index, which CI cannot
                        #            reach): the very torch CI installs from PyPI
                        assert f"python -m pip install --quiet {cpu_only.group(1)}" in ci, \
                            f"{command.where}: the CPU build's pin differs from .ci/run's"
                    elif extra:
                        assert extra.group(1) in installed_by_ci, f"{command.where}: {spec}"
                    else:
                        assert f"python -m pip install --quiet {spec}" in ci, \
                            f"{command.where}: .ci/run does not install {spec}"
            elif command.kind == "tests":
                assert command.text in ci, f"{command.where}: .ci/run does not run {command.text!r}"


CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def test_the_readmes_first_step_gives_the_no_gpu_install_on_its_own_line():
    """Step 1 on a machine without a GPU must not pull torch's CUDA build (several GB): its
    own command, first, not a paragraph below."""
    first = bash_blocks(REPO / "README.md")[0]
    no_gpu = [c for c in first if CPU_INDEX in c.text]
    assert no_gpu and no_gpu[0] is first[0], [c.text for c in first]
    assert "&&" not in no_gpu[0].text and "no gpu" in no_gpu[0].comment.lower()
    assert re.fullmatch(r"pip install torch==\S+ --index-url " + re.escape(CPU_INDEX),
                        no_gpu[0].text), no_gpu[0].text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repository_copy(target: Path) -> Path:
    """The files of this checkout (tracked, and new ones not ignored), copied to ``target``:
    the docs' commands write into it (a learner's solution/, judge-data/, judge.yaml)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            source = REPO / name
            if source.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:                                         # not a git checkout
        shutil.copytree(REPO, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "judge-data", "solution"))
    return target


def script_for(block: List[Command], workdir: Path) -> str:
    """The block as a bash script that reports each command's exit code, with `serve` in the
    background on a free port (stopped before the next `serve` and at the end)."""
    lines = ["set -u", "SERVE_PID=", "stop_serve() {",
             '  if [ -n "$SERVE_PID" ]; then kill -TERM "$SERVE_PID"; wait "$SERVE_PID";',
             '    echo "@@serve-exit $?"; SERVE_PID=; fi', "}"]
    port = None
    for k, command in enumerate(block):
        text = command.text
        if command.kind in ("gpu", "install", "tests", "elsewhere"):
            lines.append(f"echo '@@skip {k} {command.kind}'")
            continue
        clone = LEETGPU_CLONE.match(text)
        if clone:            # the stand-in is already where the clone would go
            text = f"test -f {clone.group(1)}/challenges/easy/1_vector_add/challenge.py"
        if command.kind == "serve":
            given = re.search(r"--port (\d+)", text)
            doc_port = given.group(1) if given else "8000"
            port = free_port()
            text = re.sub(r"--port \d+", f"--port {port}", text) if given else f"{text} --port {port}"
            lines += ["stop_serve", f"echo '@@cmd {k}'",
                      f"{text} > serve-{k}.log 2>&1 & SERVE_PID=$!",
                      f"python {workdir}/wait_healthy.py {port} $SERVE_PID",
                      f"echo \"@@rc {k} $?\""]
            continue
        if port is not None:
            text = text.replace(f"127.0.0.1:{doc_port}", f"127.0.0.1:{port}")
        lines += [f"echo '@@cmd {k}'", text, f"echo \"@@rc {k} $?\""]
    lines.append("stop_serve")
    return "\n".join(lines) + "\n"


WAIT_HEALTHY = r"""
import json, sys, time, urllib.request, os
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 300       # start-up on a loaded machine: imports, then workers
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("serve exited")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
    except OSError:
        time.sleep(0.3)
        continue
    if body.get("store") == "ok" and body.get("status") in ("ok", "no_workers"):
        print("healthz:", body.get("status"), body.get("problems"))
        sys.exit(0)
    time.sleep(0.3)
sys.exit("serve never answered /healthz")
"""


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path, index, block", ALL,
                         ids=[f"{p.name}-{k}" for p, k, _ in ALL])
def test_each_command_of_the_docs_runs(tmp_path, path, index, block):
    if all(c.kind in ("gpu", "install", "tests") for c in block):
        pytest.skip("only installs, the test suite itself or GPU-only commands (see the test "
                    "above for the first two)")
    work = repository_copy(tmp_path / "repo")
    home = tmp_path / "home"
    stand_in = home / "leetgpu-challenges"
    shutil.copytree(REPO / "tests" / "fixtures" / "leetgpu", stand_in)
    # LeetGPU's challenge 1 is easy/1_vector_add; the fixture's is a vector multiply
    (stand_in / "challenges" / "easy" / "1_vector_multiply").rename(
        stand_in / "challenges" / "easy" / "1_vector_add")
    (tmp_path / "wait_healthy.py").write_text(WAIT_HEALTHY)
    env = {**{k: v for k, v in os.environ.items()
              if k not in ("CHALLENGES_PATH", "JUDGE_DATA_DIR", "JUDGE_CONFIG", "JUDGE_LOCK_DIR",
                           "SERVICE_URL", "PYTHONPATH")},
           **DOC_TOKENS, "HOME": str(home), "TMPDIR": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = script_for(block, tmp_path)
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1700)
    report = f"{path.name} block {index}:\n{script}\n--- stdout\n{proc.stdout[-8000:]}\n" \
             f"--- stderr\n{proc.stderr[-8000:]}"
    codes = {int(k): int(rc) for k, rc in re.findall(r"^@@rc (\d+) (\d+)$", proc.stdout, re.M)}
    ran = [k for k, c in enumerate(block) if c.kind not in ("gpu", "install", "tests",
                                                             "elsewhere")]
    assert sorted(codes) == ran, report
    assert "Traceback" not in proc.stderr, report
    outputs = re.split(r"^@@cmd \d+$", proc.stdout, flags=re.M)[1:]
    for (k, rc), output in zip(sorted(codes.items()), outputs):
        command = block[k]
        verdict_given = re.search(r"^Verdict: [A-Z ]+", output, re.M) is not None
        assert rc == 0 or (rc == 1 and verdict_given), \
            f"{command.where}: `{command.text}` exited {rc}\n{report}"
    for exit_code in re.findall(r"^@@serve-exit (\d+)$", proc.stdout, re.M):
        # a clean drain on SIGTERM exits 0
        assert int(exit_code) == 0, f"serve did not stop cleanly\n{report}"
    for log in tmp_path.glob("repo/serve-*.log"):
        assert "Traceback" not in log.read_text(), f"{log.name}:\n{log.read_text()[-4000:]}"


def test_the_readme_lists_every_option_of_run_challenge():
    from runner.cli import build_parser
    readme = (REPO / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `--")]
    for action in build_parser()._actions:
        for option in action.option_strings:
            if option in ("-h", "--help"):
                continue
            assert any(line.startswith(f"| `{option}") for line in table), \
                f"README.md's options table has no row for {option}"
