"""The grader's own clock (issue 25): the bursts of real and null calls it times, and the
solve's time per call it takes from them (:func:`clock_per_call`). :class:`BurstClock` is the
burst's part of :class:`runner.grader.conversation.Grading`'s conversation; the README's Timing section
(*The grader's clock*) says what it measures, its limits and what a forger can gain."""

from __future__ import annotations

import base64
import math
import secrets
import statistics
import time
from typing import Any, Dict, List, Tuple

import torch

from runner import devices, protocol
from runner.cases import copy_seed, performance_case
from runner.perturb import perturb, run_generator
from runner.policy import (BURST_CHECKED, BURST_COVER_S, BURST_FLUSH_BYTES, BURST_ROUNDS,
                           HOST_COVER, MAX_BURST_CALLS, MAX_BURST_ROUNDS, NULL_SLACK,
                           PROBE_BYTES, SHORT_PART, SKIPPED_BELOW)
from runner.protocol import ProtocolViolation
from runner.timing import L2Flusher, LaunchCover, burst_loop, flush_bytes



def clock_per_call(rounds: List[Dict[str, Any]], parent_null_s: float,
                   slack: float = NULL_SLACK) -> Dict[str, Any]:
    """The solve's time per call from bursts timed on the grader's clock.

    Each round has four bursts, ``{"real": {calls: seconds}, "null": {calls: seconds}}`` at two
    lengths. A burst of n calls takes F + n (o + s) (real) or F' + n o (null): the slope over the
    two lengths drops the fixed costs F, F' (the command, the cover, the probe's round trip),
    and the difference of the slopes is s, the solve's share, on the same clock. The null's
    slope comes from the untrusted side, so it is believed only up to ``slack`` above
    ``parent_null_s``, the same loop measured by the grader in its own process (a null made
    slower would make the solve look faster). The median over the rounds is the figure."""
    per_round = []
    for r in rounds:
        (n1, r1), (n2, r2) = sorted(r["real"].items())
        (m1, z1), (m2, z2) = sorted(r["null"].items())
        if n2 <= n1 or m2 <= m1:
            raise ValueError("a round of the burst needs two different lengths")
        real, null = (r2 - r1) / (n2 - n1), (z2 - z1) / (m2 - m1)
        believed = min(null, parent_null_s * (1 + slack)) if parent_null_s > 0 else null
        per_round.append({"real_slope_s": real, "null_slope_s": null, "null_believed_s": believed,
                          "per_call_s": max(0.0, real - believed)})
    real_slope = statistics.median(p["real_slope_s"] for p in per_round)
    return {"per_call_s": statistics.median(p["per_call_s"] for p in per_round),
            "real_slope_s": real_slope,
            # a real call does the null's work and more: one faster than the grader's own null
            # skipped some of it (the flush, which nothing checks), and the difference means
            # nothing
            "skipped_grader_work": parent_null_s > 0 and real_slope < SKIPPED_BELOW * parent_null_s,
            "null_slope_s": statistics.median(p["null_slope_s"] for p in per_round),
            "null_clipped": any(p["null_believed_s"] < p["null_slope_s"] for p in per_round),
            "rounds": per_round}


class BurstClock:
    """The bursts of the grader's clock, mixed into :class:`runner.grader.conversation.Grading` (whose
    state they use: the claim, the plan, the transcript, the nonces, the samples)."""

    def _burst(self) -> List[Dict[str, Any]]:
        """Plan the bursts of the grader's clock and send the first. Rounds of four bursts in
        random order: the real one (each call on changed inputs, then checked) and the null one
        (the same flushes and input rewrites without the solve), each at a short and a long
        length; :func:`clock_per_call` turns their times into the solve's time per call."""
        median_s = statistics.median(self.claim["samples_ms"]) / 1e3
        mode = self.claim.get("mode")
        isolate = mode == "isolated"
        # a solve whose work outlived the current stream in the timed runs (the timer's
        # "device-sync" mode) gets the device drained before every rewrite: that work never
        # reads a copy being rewritten, and never overlaps the grader's rewrite and flush of
        # the next call (which would hide it from the clock; the timed runs bill it whole); one
        # whose work does not wait for the current stream ("isolated") also before every call
        sync_every = 1 if mode == "device-sync" else 0
        flush_bytes = self._burst_flush_bytes(median_s, isolate, sync_every)
        null_s, _ = self._parent_null(flush_bytes, isolate, sync_every)
        # a round takes about (short + long) calls of a real and a null burst each
        per_long_call = (1 + 1 / SHORT_PART) * (2 * null_s + max(median_s, self._floor_s(), 1e-6))
        # no longer than the output sets the child keeps (each call's outputs must survive
        # until the grader names the calls it checks), but never under 16 calls whatever it
        # claims: a child that wraps its sets fails the check of an overwritten call
        sets = self.claim.get("burst_sets", MAX_BURST_CALLS)
        longest = min(MAX_BURST_CALLS, max(16, int(sets)))
        wanted = max(16, math.ceil(self.options.burst_s / BURST_ROUNDS / per_long_call))
        long_calls = int(min(longest, wanted))
        # bursts cut short by the output sets: more rounds, so the median has as many calls
        rounds = max(BURST_ROUNDS, min(MAX_BURST_ROUNDS, math.ceil(BURST_ROUNDS * wanted
                                                                   / max(long_calls, 1))))
        short_calls = max(1, long_calls // SHORT_PART)
        self.cover_s, cycles = _cover(self.options.device, BURST_COVER_S)
        self.burst_setup = {"lengths": [short_calls, long_calls], "flush_bytes": flush_bytes,
                            "sync_every": sync_every, "isolate": isolate,
                            "parent_null_s": null_s, "cover_cycles": cycles}
        for _ in range(rounds):
            steps = [(kind, n) for kind in ("real", "null") for n in (short_calls, long_calls)]
            self._rng.shuffle(steps)
            self.schedule += [{"kind": kind, "calls": n} for kind, n in steps]
        return self._next_burst()

    def _next_burst(self) -> List[Dict[str, Any]]:
        if not self.schedule:
            self._finish_clock()
            return self._fresh()
        burst = self.schedule.pop(0)
        burst["nonce"] = secrets.randbits(62)
        burst["round"] = len(self.bursts) // 4
        self.bursts.append(burst)
        self.nonces["burst"] = burst["nonce"]
        setup = self.burst_setup
        self.transcript.expect(protocol.BURST_DONE)
        self.timing_sensitive = True
        self.burst_sent_at = time.perf_counter()
        burst["sent_at"] = self.burst_sent_at
        return [{"command": protocol.CMD_BURST, "nonce": burst["nonce"], "calls": burst["calls"],
                 "cover_cycles": setup["cover_cycles"], "sync_every": setup["sync_every"],
                 "null": burst["kind"] == "null", "isolate": setup["isolate"],
                 "flush_bytes": setup["flush_bytes"]}]

    def _on_burst_done(self, payload: Dict[str, Any], received_at: float):
        calls = payload["calls"]
        burst = self.bursts[-1] if self.bursts else {"calls": MAX_BURST_CALLS}
        if calls != burst["calls"]:
            raise ProtocolViolation(f"a burst that reports {calls} calls where "
                                    f"{burst['calls']} were asked")
        self.burst_calls = calls
        self.burst_done_at = received_at
        burst["done_at"] = received_at
        self.child_burst = {k: float(payload[k]) for k in ("enqueue_s", "wall_s")
                            if isinstance(payload.get(k), (int, float))}
        burst["child_says"] = self.child_burst
        # which bytes of every call's outputs must come back: named only now, after the burst;
        # as many as keep the probe's line well under the report channel's limit for the
        # longest burst, and as many for every burst, real or null (its cost then drops out)
        outputs = self.plan.perf_expected or {}
        longest = max(self.burst_setup.get("lengths", [calls]))
        per_output = max(4, min(64, PROBE_BYTES // max(1, max(calls, longest) * len(outputs))))
        self.positions = {}
        for name, expected in outputs.items():
            nbytes = expected.numel() * expected.element_size()
            self.positions[name] = sorted(self._rng.sample(range(nbytes), min(nbytes, per_output)))
        self.transcript.expect(protocol.BURST_PROBE)
        self.probe_sent_at = time.perf_counter()
        burst["probe_sent_at"] = self.probe_sent_at
        return [{"command": protocol.CMD_PROBE, "calls": calls, "positions": self.positions}]

    def _on_burst_probe(self, payload: Dict[str, Any], received_at: float):
        self.burst_seconds = received_at - self.burst_sent_at
        self.timing_sensitive = False
        burst = self.bursts[-1] if self.bursts else {"kind": "real"}
        burst["seconds"] = self.burst_seconds
        probed = {}
        for name, positions in self.positions.items():
            try:
                raw = base64.b64decode(payload["values"][name], validate=True)
            except (KeyError, ValueError, TypeError):
                raise ProtocolViolation("a burst probe that does not hold the bytes asked for") from None
            if len(raw) != self.burst_calls * len(positions):
                raise ProtocolViolation("a burst probe that does not hold the bytes asked for")
            probed[name] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(
                self.burst_calls, len(positions))
        self.probed = probed
        if burst["kind"] == "null":      # nothing was computed: nothing to check
            return self._next_burst()
        calls = list(range(self.burst_calls))
        return self._reveal("burst", self._pick(calls, [calls[-1]], BURST_CHECKED))

    # -- the parent's clock and physics --------------------------------------------------------
    def _floor_s(self) -> float:
        nbytes = self.challenge.bytes_moved(self.plan.perf_case) if self.plan.perf_case else None
        ceiling = devices.ceiling(self.options.device)
        if not nbytes or not ceiling:
            return 0.0
        return nbytes / (ceiling.gbps * 1e9)

    def _burst_flush_bytes(self, median_s: float, isolate: bool, sync_every: int) -> int:
        """How much each burst call reads to flush L2: what the timed runs read, more where a
        call's host time (the solve's, as the timed runs saw it, and the rewrite's, measured
        here) would outrun its GPU work and leave the GPU idle; never more than
        BURST_FLUSH_BYTES. 0 on the CPU."""
        device = self.options.device
        if device.type != "cuda":
            return 0
        base = flush_bytes(device)
        ceiling = devices.ceiling(device)
        if isolate or not ceiling:     # an isolated call waits for the device anyway
            return base
        null_s, host_s = self._parent_null(base, isolate, sync_every)
        host_s += float(self.claim.get("host_us", 0.0)) / 1e6
        missing = HOST_COVER * host_s - (null_s + median_s)
        extra = int(max(0.0, missing) * ceiling.gbps * 1e9)
        return int(min(BURST_FLUSH_BYTES, base + -(-extra // 2**20) * 2**20))

    def _parent_null(self, flush_bytes_: int, isolate: bool, sync_every: int) -> Tuple[float, float]:
        """(seconds per call, host seconds per call) of a null burst measured here, on this
        device, with the child's own loop (:func:`runner.timing.burst_loop`): the input rewrite
        and the flush, no solve, the slope over two lengths (median of five)."""
        device = self.options.device
        base = self._bases.get(0) or performance_case(self.challenge, copy_seed(self.options.seed, 0))
        self._bases[0] = base
        args = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in base.items()}
        cuda = device.type == "cuda"
        if cuda:
            flusher = self._flusher.sized(flush_bytes_)
            sync = lambda: torch.cuda.synchronize(device)   # noqa: E731
        else:
            flusher = sync = (lambda: None)
        generator = torch.Generator(device=device)

        def prepare(i: int) -> None:
            perturb(self.challenge, args, base, self.directions, run_generator(device, 1, i, generator))

        def run(n: int) -> Tuple[float, float]:
            sync()
            t0 = time.perf_counter()
            burst_loop(n, prepare, None, flusher, isolate=isolate, sync_every=sync_every, sync=sync)
            t1 = time.perf_counter()
            sync()
            return time.perf_counter() - t0, t1 - t0

        run(8)    # warm-up (and the clocks up)
        short, long_ = 8, 64
        slopes, hosts = [], []
        for _ in range(5):
            a, _ = run(short)
            b, host = run(long_)
            slopes.append(max(0.0, (b - a) / (long_ - short)))
            hosts.append(host / long_)
        return statistics.median(slopes), statistics.median(hosts)

    @property
    def _flusher(self) -> L2Flusher:
        if not hasattr(self, "_flusher_obj"):
            self._flusher_obj = L2Flusher(self.options.device, BURST_FLUSH_BYTES)
        return self._flusher_obj

    def _finish_clock(self) -> None:
        rounds: Dict[int, Dict[str, Dict[int, float]]] = {}
        for b in self.bursts:
            r = rounds.setdefault(b["round"], {"real": {}, "null": {}})
            r[b["kind"]][b["calls"]] = b["seconds"]
        setup = self.burst_setup
        found = clock_per_call([rounds[k] for k in sorted(rounds)], setup["parent_null_s"])
        real = [b for b in self.bursts if b["kind"] == "real"]
        last = real[-1]
        self.clock = {"method": "slope of real minus null bursts",
                      "calls": sum(b["calls"] for b in real), "lengths": setup["lengths"],
                      "rounds": len(rounds), "seconds": sum(b["seconds"] for b in self.bursts),
                      "per_call_ms": found["per_call_s"] * 1e3,
                      "real_slope_ms": found["real_slope_s"] * 1e3,
                      "null_slope_ms": found["null_slope_s"] * 1e3,
                      "grader_null_ms": setup["parent_null_s"] * 1e3,
                      "null_clipped": found["null_clipped"],
                      "skipped_grader_work": found["skipped_grader_work"],
                      "flush_bytes": setup["flush_bytes"], "sync_every": setup["sync_every"],
                      "isolated": setup["isolate"], "cover_ms": self.cover_s * 1e3,
                      "child_says": last.get("child_says", {}),
                      # where the fixed cost of the last real burst goes, for people reading the
                      # result: the command to the burst's report, and the probe's round trip
                      "to_done_ms": (last["done_at"] - last["sent_at"]) * 1e3,
                      "probe_ms": (last["sent_at"] + last["seconds"] - last["probe_sent_at"]) * 1e3,
                      "per_round_ms": [{k[:-2] + "_ms": v * 1e3 for k, v in r.items()}
                                       for r in found["rounds"]]}


def _cover(device: torch.device, seconds: float) -> Tuple[float, int]:
    """(its measured length, its cycles) of a spin kernel of about ``seconds`` on ``device``:
    the burst starts behind it so that its first launches queue up."""
    if device.type != "cuda":
        return 0.0, 0
    cycles = int(LaunchCover().cycles_per_us * seconds * 1e6)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    lengths = []
    for _ in range(3):
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        lengths.append(start.elapsed_time(end) / 1e3)
    return min(lengths), cycles
