"""Leaderboards in the store, on SQLite (always) and PostgreSQL (when $JUDGE_TEST_POSTGRES_URL
reaches a server): candidates, verification runs (a new seed, another worker where there is
one, the 10% band), ranks by the verification median, per language, not-timed entries apart,
held entries with both figures, the admin's review, the events on the submission's stream, and
the sweep that finishes what a dead API process left undone. Workers are played by the test
(claims and results through the service), so every figure is exact."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from judge_helpers import fresh_store  # noqa: E402
from runner.judge.server.auth import Principal, TokenRegistry
from runner.judge.server.candidates import Timing
from runner.judge.accelerators import Accelerators
from runner.judge.challenge_set import ChallengeSet
from runner.judge.config import JudgeConfig
from runner.judge.server.leaderboard import VERIFIER
from runner.policy import LEADERBOARD_BAND
from runner.judge.wire import SubmitRequest
from runner.judge.rejected import Rejected
from runner.judge.server.service import JudgeService

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).resolve().parent
CHALLENGE = "1_vector_add"


@pytest.fixture(params=["sqlite", "postgres"])
def service(request, tmp_path):
    store = fresh_store(request.param, tmp_path)
    config = JudgeConfig()
    config.limits.max_in_flight = 100
    svc = JudgeService(config, store, ChallengeSet([HERE / "challenges"]),
                       Accelerators({"H200": [], "cpu": []}), TokenRegistry(open_access=False))
    yield svc
    store.close()


def user(name: str, *roles: str) -> Principal:
    return Principal(name, frozenset(roles or ("user",)))


def submit(svc, who: str, language: str = "cuda", accelerator: str = "H200",
           action: str = "submit") -> str:
    req = SubmitRequest(action=action, language=language, file_name="solution.cu",
                        content=f"// {who} {uuid.uuid4().hex}", challenge=CHALLENGE,
                        accelerator=accelerator)
    record, created = svc.submit(user(who), req)
    assert created
    return record.id


def result(median_ms=None, verdict="accepted", floor=None, message="", clock_agrees=True):
    perf = {"timed": median_ms is not None, "clock": {"agrees": clock_agrees}}
    if median_ms is not None:
        perf.update(solution={"median_ms": median_ms}, gbps=66e6 / (median_ms * 1e-3) / 1e9,
                    bandwidth_fraction=0.5)
        if floor is not None:
            perf["floor_fraction"] = floor
    else:
        perf["reason"] = "no GPU: run once for correctness"
    return {"verdict": verdict, "message": message, "performance": perf}


def grade(svc, worker: str, sid: str, res: dict, accelerator: str = "H200") -> None:
    """A worker claims exactly ``sid`` (the next queued job must be it) and stores ``res``."""
    job = svc.claim(worker, [accelerator])
    assert job is not None and job.lease.submission_id == sid, (job and job.lease.submission_id)
    assert svc.complete(sid, job.lease.lease_id, res).stored


def verification_of(svc, sid: str) -> str:
    c = svc.leaderboard.candidate(sid)
    assert c is not None and c.state == "verifying", c
    return c.verification_id


def lb_events(svc, sid):
    return [e.output for e in svc.store.events(sid) if e.status == "leaderboard"]


def test_a_new_best_is_verified_with_a_new_seed_and_ranked_by_the_verification_median(service):
    sid = submit(service, "alice")
    grade(service, "w1", sid, result(0.0320, floor=0.81))
    original = service.store.get(sid)
    vid = verification_of(service, sid)
    run = service.store.get(vid)
    # its own job: the same file, a new secret seed, nobody's but the verifier's
    assert run.owner == VERIFIER and run.action == "submit" and run.state == "queued"
    assert run.content == original.content and run.seed != original.seed
    assert run.avoid_worker is None      # no other worker has been seen: the same one may run it
    first = lb_events(service, sid)
    assert len(first) == 1 and first[0]["state"] == "verifying" and not first[0]["final"]
    assert first[0]["verificationId"] == vid
    # the event comes after the terminal one, on the same numbered stream
    events = service.store.events(sid)
    assert [e.status for e in events][-2:] == ["success", "leaderboard"]
    assert [e.seq for e in events] == list(range(len(events)))
    board = service.leaderboard.board(CHALLENGE, "H200")
    assert board["entries"] == [] and [e["submissionId"] for e in board["verifying"]] == [sid]

    grade(service, "w1", vid, result(0.0300, floor=0.86))            # 6.7% apart: agrees
    board = service.leaderboard.board(CHALLENGE, "H200")
    [entry] = board["entries"]
    assert entry["rank"] == 1 and entry["owner"] == "alice" and entry["state"] == "ranked"
    assert entry["medianMs"] == pytest.approx(0.0300)                 # the verification's median
    assert entry["submittedMedianMs"] == pytest.approx(0.0320)
    assert entry["floorFraction"] == pytest.approx(0.86)
    assert entry["gbps"] == pytest.approx(66e6 / 30e-6 / 1e9)
    assert entry["language"] == "cuda" and entry["verificationId"] == vid
    final = lb_events(service, sid)[-1]
    assert final["final"] and final["state"] == "ranked" and final["rank"] == 1
    assert "ranked 1 of 1" in final["message"]


def test_medians_outside_the_band_are_held_for_review_with_both_figures(service):
    sid = submit(service, "alice")
    grade(service, "w1", sid, result(0.0100))          # claims 10 us
    vid = verification_of(service, sid)
    grade(service, "w1", vid, result(0.0111))          # 11% apart: outside the 10% band
    assert LEADERBOARD_BAND == 0.10
    board = service.leaderboard.board(CHALLENGE, "H200")
    assert board["entries"] == []
    [held] = board["held"]
    assert held["submittedMedianMs"] == pytest.approx(0.0100)
    assert held["verifiedMedianMs"] == pytest.approx(0.0111)
    assert "disagree" in held["reason"] and "10%" in held["reason"]
    final = lb_events(service, sid)[-1]
    assert final["final"] and final["state"] == "held"
    assert held["disagreement"] == pytest.approx(0.11)


@pytest.mark.parametrize("which", ["submitted", "verification"])
def test_a_time_the_graders_clock_did_not_corroborate_is_held(service, which):
    sid = submit(service, "alice")
    grade(service, "w1", sid, result(0.0100, clock_agrees=which != "submitted"))
    vid = verification_of(service, sid)
    grade(service, "w1", vid, result(0.0101, clock_agrees=which != "verification"))
    board = service.leaderboard.board(CHALLENGE, "H200")
    assert board["entries"] == []
    [held] = board["held"]
    assert "clock did not corroborate" in held["reason"]


def test_admin_review_approves_a_held_entry_and_removes_one(service):
    sid = submit(service, "alice")
    grade(service, "w1", sid, result(0.0100))
    vid = verification_of(service, sid)
    grade(service, "w1", vid, result(0.0150))
    approved = service.leaderboard.review(sid, "approve", "root", "rechecked on the host")
    assert approved.state == "ranked" and approved.reviewed_by == "root"
    [entry] = service.leaderboard.board(CHALLENGE, "H200")["entries"]
    assert entry["medianMs"] == pytest.approx(0.0150)       # the slower, verification figure
    with pytest.raises(Rejected) as exc:
        service.leaderboard.review(sid, "approve", "root")
    assert exc.value.http_status == 409                     # only held entries are approved
    removed = service.leaderboard.review(sid, "remove", "root", "copied solution")
    assert removed.state == "removed" and "copied solution" in removed.reason
    board = service.leaderboard.board(CHALLENGE, "H200")
    assert board["entries"] == [] and board["history"][0]["state"] == "removed"
    assert lb_events(service, sid)[-1]["review"] == "remove"
    with pytest.raises(Rejected) as exc:
        service.leaderboard.review("no-such-submission", "remove", "root")
    assert exc.value.http_status == 404


def test_ranks_per_challenge_accelerator_and_language_use_each_users_best(service):
    def ranked(who, language, submitted, verified):
        sid = submit(service, who, language)
        grade(service, "w1", sid, result(submitted))
        grade(service, "w1", verification_of(service, sid), result(verified))
        return sid

    a_cuda = ranked("alice", "cuda", 0.0260, 0.0256)
    b_triton = ranked("bob", "triton", 0.0340, 0.0339)
    a_torch = ranked("alice", "pytorch", 0.3600, 0.3537)
    c_torch = ranked("carol", "pytorch", 0.4000, 0.3900)
    board = service.leaderboard.board(CHALLENGE, "H200")
    assert [(e["rank"], e["owner"], e["language"]) for e in board["entries"]] == \
        [(1, "alice", "cuda"), (2, "bob", "triton"), (3, "carol", "pytorch")]
    torch_board = service.leaderboard.board(CHALLENGE, "H200", "pytorch")
    assert [(e["owner"], e["submissionId"]) for e in torch_board["entries"]] == \
        [("alice", a_torch), ("carol", c_torch)]
    assert service.leaderboard.board(CHALLENGE, "cpu")["entries"] == []   # per accelerator
    # a slower submit by alice in cuda is not a candidate: no verification, board unchanged
    slow = submit(service, "alice", "cuda")
    grade(service, "w1", slow, result(0.0300))
    assert service.leaderboard.candidate(slow).state == "unchanged"
    [event] = lb_events(service, slow)
    assert event["final"] and event["state"] == "unchanged" and a_cuda in event["message"]
    assert service.store.list(VERIFIER, 100)[0].state == "done"       # no new verification run
    # a faster one replaces her entry once verified; the board shows each user once
    fast = ranked("alice", "cuda", 0.0200, 0.0201)
    board = service.leaderboard.board(CHALLENGE, "H200")
    assert [e["submissionId"] for e in board["entries"]][:2] == [fast, b_triton]
    assert [e["owner"] for e in board["entries"]] == ["alice", "bob", "carol"]


def test_a_wrong_answer_under_the_new_seed_is_rejected(service):
    sid = submit(service, "mallory")
    grade(service, "w1", sid, result(0.0010))
    vid = verification_of(service, sid)
    grade(service, "w1", vid, {"verdict": "wrong_answer", "message": "test 3: 12 mismatches"})
    board = service.leaderboard.board(CHALLENGE, "H200")
    assert board["entries"] == [] and board["held"] == []
    assert board["history"][0]["state"] == "rejected"
    assert "wrong_answer" in board["history"][0]["reason"]
    final = lb_events(service, sid)[-1]
    assert final["final"] and final["state"] == "rejected" and "12 mismatches" in final["message"]


def test_cpu_results_are_not_timed_and_listed_apart(service):
    sid = submit(service, "alice", "pytorch", accelerator="cpu")
    grade(service, "c1", sid, result(None), accelerator="cpu")
    vid = verification_of(service, sid)
    grade(service, "c1", vid, result(None), accelerator="cpu")
    board = service.leaderboard.board(CHALLENGE, "cpu")
    assert board["entries"] == []
    [entry] = board["notTimed"]
    assert entry["owner"] == "alice" and entry["timed"] is False and entry["medianMs"] is None
    final = lb_events(service, sid)[-1]
    assert final["state"] == "ranked" and "not timed" in final["message"]
    # a second accepted CPU submit does not beat it: nothing to verify
    again = submit(service, "alice", "pytorch", accelerator="cpu")
    grade(service, "c1", again, result(None), accelerator="cpu")
    assert service.leaderboard.candidate(again).state == "unchanged"


def test_the_verification_avoids_the_original_worker_when_another_is_present(service):
    service.claim("w2", ["H200"])        # w2 is polling (nothing queued yet)
    sid = submit(service, "alice")
    grade(service, "w1", sid, result(0.0300))
    vid = verification_of(service, sid)
    assert service.store.get(vid).avoid_worker == "w1"
    assert service.claim("w1", ["H200"]) is None           # w1 may not take it
    assert service.leaderboard.skip_claim("w1", vid)       # nor by id, as a fleet's worker would
    job = service.claim("w2", ["H200"])
    assert job is not None and job.lease.submission_id == vid
    assert service.complete(vid, job.lease.lease_id, result(0.0310)).stored
    entry = service.leaderboard.board(CHALLENGE, "H200")["entries"][0]
    assert entry["worker"] == "w1" and entry["verifyWorker"] == "w2"


def test_run_actions_errors_and_custom_challenges_never_reach_the_board(service):
    run = submit(service, "alice", action="run")
    grade(service, "w1", run, result(None))
    wrong = submit(service, "alice")
    grade(service, "w1", wrong, {"verdict": "wrong_answer", "message": "no"})
    assert service.leaderboard.candidate(run) is None
    assert service.leaderboard.candidate(wrong) is None
    assert lb_events(service, run) == [] and lb_events(service, wrong) == []
    assert not service.leaderboard.awaiting(run) and not service.leaderboard.awaiting(wrong)
    assert service.store.list(VERIFIER, 10) == []


def test_the_sweep_decides_what_a_dead_api_process_left_undone(service, monkeypatch):
    # the process died right after storing the result: nothing was decided
    monkeypatch.setattr(service.leaderboard, "on_complete", lambda record: None)
    sid = submit(service, "alice")
    grade(service, "w1", sid, result(0.0300))
    assert service.leaderboard.candidate(sid) is None
    assert service.leaderboard.awaiting(sid)           # a follower keeps waiting
    assert service.leaderboard.sweep() == 1
    vid = verification_of(service, sid)
    grade(service, "w1", vid, result(0.0290))
    assert service.leaderboard.candidate(sid).state == "verifying"
    assert service.leaderboard.sweep() == 1
    assert service.leaderboard.candidate(sid).state == "ranked"
    assert service.leaderboard.sweep() == 0             # idempotent
    assert [e["state"] for e in lb_events(service, sid)] == ["verifying", "ranked"]
    assert not service.leaderboard.awaiting(sid)


def test_an_interrupted_verification_is_held_and_cannot_be_approved(service):
    sid = submit(service, "alice")
    grade(service, "w1", sid, result(0.0300))
    vid = verification_of(service, sid)
    job = service.claim("w1", ["H200"])
    service.release(vid, job.lease.lease_id, "GPU fell off the bus")
    for _ in range(2):                                   # the retry budget (2) runs out
        job = service.claim("w1", ["H200"]) or service.claim("w9", ["H200"])
        service.release(vid, job.lease.lease_id, "GPU fell off the bus")
    assert service.store.get(vid).verdict == "interrupted"
    service.leaderboard.sweep()
    c = service.leaderboard.candidate(sid)
    assert c.state == "held" and "interrupted" in c.reason
    with pytest.raises(Rejected) as exc:
        service.leaderboard.review(sid, "approve", "root")
    assert "no verification median" in exc.value.message


def test_timing_is_read_defensively():
    assert not Timing.of(None).timed
    assert not Timing.of({"performance": "garbage"}).timed
    assert not Timing.of({"performance": {"timed": True, "solution": {"median_ms": "1"}}}).timed
    assert not Timing.of({"performance": {"timed": True, "solution": {"median_ms": 0}}}).timed
    t = Timing.of({"performance": {"timed": True, "solution": {"median_ms": 0.03}, "gbps": 2000,
                                   "floor": {"fraction": 0.8}}})
    assert t.timed and t.median_ms == 0.03 and t.gbps == 2000 and t.floor_fraction == 0.8
