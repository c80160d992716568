"""The scripts that spend the device's minutes (benchmarks/device_verify.sh, device_call.sh):
a mistake in them costs a whole device call, so what can be checked without a GPU is checked
here: every phase the header names is accepted and has a branch, and device_call.sh keeps its
deadline, packs what ran after every phase and skips a phase it has no time for."""

import re
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VERIFY = REPO / "benchmarks" / "device_verify.sh"
CALL = REPO / "benchmarks" / "device_call.sh"


def test_both_scripts_parse():
    for script in (VERIFY, CALL):
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_every_phase_in_the_header_is_accepted_and_has_a_branch():
    text = VERIFY.read_text()
    header = {m.group(1) for m in re.finditer(r"^#   ([a-z0-9]+)\s{2,}\S", text, re.M)}
    accepted = set(re.search(r'case "\$phase" in ([a-z0-9|]+)\)', text).group(1).split("|"))
    branches = set(re.findall(r"^([a-z0-9]+)\)$", text, re.M))
    assert header and header == accepted == branches
    usage = re.search(r"phase=\$\{1:\?phase: ([^}]+)\}", text).group(1)
    assert set(re.findall(r"[a-z0-9]+", usage.replace(" or ", " "))) - {"phase"} == accepted


def test_an_unknown_phase_is_refused_before_anything_runs(tmp_path):
    done = subprocess.run(["bash", str(VERIFY), "no_such_phase", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "unknown phase no_such_phase" in done.stderr
    assert not (tmp_path / "out").exists()


def fake_repo(tmp_path: Path) -> Path:
    """device_call.sh beside a stand-in device_verify.sh whose phases sleep as long as their
    name says and write a file into their output folder."""
    bench = tmp_path / "repo" / "benchmarks"
    bench.mkdir(parents=True)
    (bench / "device_call.sh").write_text(CALL.read_text())
    (bench / "device_verify.sh").write_text(
        'mkdir -p "$2"; echo started > "$2/started"\n'
        'sleep "${1#s}"\n'
        'echo done > "$2/done"\n')
    return bench


@pytest.mark.slow     # half a minute: a phase gets 30 s at least
def test_device_call_keeps_its_deadline_and_packs_after_every_phase(tmp_path):
    bench = fake_repo(tmp_path)
    out, work = tmp_path / "out", tmp_path / "work"
    # s1 ends, s300 is stopped at the deadline, s2 has no time left and is skipped
    done = subprocess.run(["bash", str(bench / "device_call.sh"), "35", "s1", "s300", "s2"],
                          env={"PATH": "/usr/bin:/bin", "OUT": str(out),
                               "DEVICE_CALL_DIR": str(work)},
                          capture_output=True, text=True, timeout=120)
    times = (work / "times.txt").read_text()
    assert "s1 rc=0" in times
    assert re.search(r"s300 rc=(124|130|137)", times)
    assert "s2 skipped" in times
    with tarfile.open(out / "results.tgz") as tar:
        names = set(tar.getnames())
    assert {"./s1/done", "./s300/started", "./times.txt"} <= names
    assert "./s300/done" not in names, done.stdout
