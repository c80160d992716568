"""The judge serves a checkout of LeetGPU's challenges next to its own set, for LeetGPU's
unmodified client: accelerator names it sends (T4 by default) are served by the accelerators
that exist, a challenge.py text is matched against every root, two challenges with the same
folder name in two roots are both reachable, and a checkout root is accepted as such.
tests/fixtures/leetgpu stands in for LeetGPU's checkout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from judge_helpers import (CHALLENGES, REPO, SOLUTIONS, Judge, leetgpu_client, message,
                           write_config)
from runner.judge.server.app import create_app
from runner.judge.accelerators import Accelerators
from runner.judge.challenge_set import ChallengeSet
from runner.judge.config import ConfigError, load_config, parse_config
from runner.judge.rejected import Rejected
from runner.judge.server.service import JudgeService

CHECKOUT = REPO / "tests" / "fixtures" / "leetgpu"
OLD_STYLE = CHECKOUT / "challenges" / "easy" / "1_vector_multiply"


def twin_checkout(tmp_path: Path) -> Path:
    """A checkout (challenges/ inside) holding a 1_vector_add of its own: the same folder name
    as the judge's test challenge, another challenge.py (it adds 1 more)."""
    folder = tmp_path / "other-checkout" / "challenges" / "easy" / "1_vector_add"
    folder.mkdir(parents=True)
    text = (CHALLENGES / "easy" / "1_vector_add" / "challenge.py").read_text()
    changed = text.replace("C.copy_(A + B)", "C.copy_(A + B + 1)")
    assert changed != text
    (folder / "challenge.py").write_text(changed)
    return tmp_path / "other-checkout"


def test_a_checkout_root_and_same_named_folders_of_two_roots(tmp_path):
    other = twin_checkout(tmp_path)
    challenge_set = ChallengeSet([CHALLENGES, other, CHECKOUT])
    ids = [e.id for e in challenge_set.entries]
    assert "judge/1_vector_add" in ids and "other-checkout/1_vector_add" in ids
    assert "1_vector_multiply" in ids                  # a checkout root: its challenges/ is read
    ours = (CHALLENGES / "easy" / "1_vector_add" / "challenge.py").read_text()
    theirs = (other / "challenges" / "easy" / "1_vector_add" / "challenge.py").read_text()
    assert challenge_set.id_of(challenge_set.match_code(ours)) == "judge/1_vector_add"
    assert challenge_set.id_of(challenge_set.match_code(theirs)) == "other-checkout/1_vector_add"
    assert challenge_set.find("other-checkout/1_vector_add").path.parent.parent.parent == other
    with pytest.raises(Rejected) as info:
        challenge_set.find(1)
    assert info.value.code == "ambiguous_challenge"
    assert "judge/1_vector_add, other-checkout/1_vector_add" in info.value.message
    assert "challengeCode" in info.value.message
    assert challenge_set.find("vector_multiply").path == OLD_STYLE     # unique: found as before
    twice = ChallengeSet([CHECKOUT, CHECKOUT / "challenges"])           # one folder, two ways
    assert [e.id for e in twice.entries] == [e.id for e in ChallengeSet([CHECKOUT]).entries]


def test_a_challenges_folder_without_challenges_is_a_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no challenge under .*empty.*checkout"):
        parse_config({"challenges": [str(tmp_path / "empty")]}, tmp_path / "judge.yaml")
    config = parse_config({"challenges": [str(CHECKOUT)]}, tmp_path / "judge.yaml")
    assert config.challenge_dirs == [CHECKOUT]


def test_gpu_names_are_served_by_the_accelerators_that_exist():
    cpu_only = Accelerators({"cpu": []})
    for name in ("T4", "NVIDIA TESLA T4", "A100", "H100", "H200", "B200"):
        assert cpu_only.resolve(name) == "cpu", name
    with pytest.raises(Rejected, match="unknown accelerator 'TPU v9'.*served by cpu"):
        cpu_only.resolve("TPU v9")                      # not a GPU name: refused, saying why
    mapped = Accelerators({"H100": ["NVIDIA H100 80GB HBM3"], "cpu": []},
                          {"T4": "cpu", "B200": None, "*": "H100"})
    assert mapped.resolve("Tesla T4") == "cpu" and mapped.resolve("A100") == "H100"
    assert mapped.resolve("nvidia h100 80gb hbm3") == "H100"
    with pytest.raises(Rejected, match="does not serve 'B200'"):
        mapped.resolve("B200")
    with pytest.raises(ValueError, match="no accelerator 'V100'"):
        Accelerators({"cpu": []}, {"T4": "V100"})


def test_accelerator_map_in_the_config(tmp_path):
    config = parse_config({"accelerators": ["cpu"], "accelerator_map": {"T4": "cpu", "B200": None}})
    assert config.accelerator_map == {"T4": "cpu", "B200": None}
    with pytest.raises(ConfigError, match="T4 -> H100, which is not one of `accelerators`"):
        parse_config({"accelerators": ["cpu"], "accelerator_map": {"T4": "H100"}})
    with pytest.raises(ConfigError, match="accelerator_map.*must be a mapping"):
        parse_config({"accelerator_map": ["T4"]})


@pytest.fixture
def service_with_both_roots(tmp_path):
    other = twin_checkout(tmp_path)
    config = load_config(write_config(tmp_path / "judge.yaml", accelerators={"cpu": []},
                                      challenges=[str(CHALLENGES), str(CHECKOUT), str(other)]))
    service = JudgeService.from_config(config, tmp_path)
    with TestClient(create_app(service)) as client:
        yield client, service, other


def first_reply(client, msg):
    with client.websocket_connect("/api/v1/ws/submit") as ws:
        ws.send_text(json.dumps(msg))
        return json.loads(ws.receive_text())


def test_a_user_token_sends_leetgpu_challenge_code_with_the_default_t4(service_with_both_roots):
    client, service, other = service_with_both_roots
    code = (OLD_STYLE / "challenge.py").read_text()
    reply = first_reply(client, message(submission={"challengeCode": code, "accelerator": "T4"}))
    assert reply["status"] == "queued" and "for cpu" in reply["output"], reply
    record = service.store.get(reply["submissionId"])
    assert record.challenge == "1_vector_multiply" and record.challenge_code is None
    twin = (other / "challenges" / "easy" / "1_vector_add" / "challenge.py").read_text()
    reply = first_reply(client, message(submission={"challengeCode": twin}))
    assert service.store.get(reply["submissionId"]).challenge == "other-checkout/1_vector_add"
    reply = first_reply(client, message(submission={"challengeCode": None, "challenge": 1}))
    assert reply["status"] == "error" and "names 3 challenges" in reply["output"], reply


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_leetgpu_client_grades_both_same_named_challenges_by_their_text(tmp_path):
    other = twin_checkout(tmp_path)
    judge = Judge(tmp_path, write_config(tmp_path / "judge.yaml",
                                         challenges=[str(CHALLENGES), str(other)]))
    try:
        judge.start_api()
        judge.start_worker("a", extra=["--challenges", str(other)])
        correct = SOLUTIONS / "correct.pytorch.py"
        plus_one = tmp_path / "plus_one.pytorch.py"
        plus_one.write_text(correct.read_text().replace("torch.add(A, B, out=C)",
                                                        "torch.add(A, B + 1, out=C)"))
        assert plus_one.read_text() != correct.read_text()
        twin = (other / "challenges" / "easy" / "1_vector_add" / "challenge.py").read_text()
        for code, solution, verdict, challenge in [
                (twin, plus_one, "accepted", "other-checkout/1_vector_add"),
                (twin, correct, "wrong_answer", "other-checkout/1_vector_add"),
                (None, correct, "accepted", "judge/1_vector_add")]:
            msg = message(submission={"accelerator": "T4",
                                      "files": [{"name": "solution.py",
                                                 "content": solution.read_text()}]})
            if code is not None:
                msg["submission"]["challengeCode"] = code
            log = leetgpu_client(judge.url, msg)
            assert log[-1]["output"]["verdict"] == verdict, (code is None, solution, log[-1])
            assert log[-1]["output"]["challenge"] == challenge
    finally:
        judge.close()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
