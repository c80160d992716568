"""The submission side of a grading: load the solution, call it on every case, time it.

This runs wherever the untrusted code runs (a sandboxed child process, or the grading process
itself with ``--no-sandbox``). It never computes or sees expected outputs: it regenerates the
test inputs from the job's seed, runs ``solve`` and reports the outputs, which the parent
compares (see :mod:`runner.grader.grade`). Messages go through a :class:`Channel`.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import torch

from runner import languages, protocol
from runner.buffers import (GuardedOutput, PreparedCall, directions_of, fill_initial_,
                            prepare_call)
from runner.cases import copy_seed, fresh_seed, performance_case, test_cases
from runner.catalog import find_challenge
from runner.digest import digest
from runner.errors import MemoryLimitExceeded, SubmissionError, UserRuntimeError
from runner.loading import load_challenge
from runner.perturb import perturb, run_generator
from runner.policy import BURST_FLUSH_BYTES, GUARD_BYTES, MAX_BURST_CALLS, MAX_TIMED_RUNS
from runner.profiling import profile_solution
from runner.protocol import Job
from runner.timing import flush_bytes as flush_bytes_of
from runner.timing import (L2Flusher, LaunchCover, burst_loop, time_cuda, time_host,
                           timing_tampering)

class Channel(Protocol):
    def progress(self, message: str) -> None: ...

    def send(self, kind: str, payload: Dict[str, Any],
             tensors: Optional[Dict[str, torch.Tensor]] = None) -> None: ...

    def receive(self) -> Dict[str, Any]: ...


# -- running --------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def classify_runtime_error(exc: BaseException) -> SubmissionError:
    text = str(exc).strip()
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in text:
        return MemoryLimitExceeded(f"out of memory: {text.splitlines()[0] if text else type(exc).__name__}")
    return UserRuntimeError(f"a CUDA error occurred in your kernels: {text}")


def call_and_sync(solve_call, prepared: PreparedCall, device: torch.device) -> None:
    solve_call(prepared.args)
    try:
        synchronize(device)
    except (RuntimeError, MemoryError) as exc:
        raise classify_runtime_error(exc)


def report_call(channel: Channel, kind: str, payload: Dict[str, Any], prepared: PreparedCall,
                directions: Dict[str, str]) -> None:
    outputs = {name: prepared.outputs[name].written().detach().to("cpu").clone()
               for name, d in directions.items() if d != "in"}
    channel.send(kind, {**payload, "modified_inputs": prepared.modified_inputs(),
                        "guard_damage": prepared.guard_damage()}, outputs)


def run_cases(challenge, solve_call, job: Job, channel: Channel, device: torch.device) -> None:
    directions = directions_of(challenge.get_solve_signature())
    cases = test_cases(challenge, job.action, job.seed)
    for k, (name, case) in enumerate(cases):
        channel.progress(f"running {name} ({k + 1} of {len(cases)})")
        prepared = prepare_call(case, directions)
        call_and_sync(solve_call, prepared, device)
        report_call(channel, protocol.CASE, {"index": k, "name": name}, prepared, directions)


def _tampering() -> str:
    """Harness functions the submission replaced ('' when none): the timer's and, in a
    sandboxed child, the report channel's."""
    found = [timing_tampering()]
    child = sys.modules.get("runner.sandbox.child")
    if child is not None:
        found.append(child.capture_check())
    return ", ".join(f for f in found if f)


class PerfBench:
    """The performance case's input copies and the output sets of timed runs.

    Run ``i`` reads input copy ``i % copies``, rewritten from its pristine base by the
    challenge's perturbation under the parent's nonce, and writes output set ``i % sets``.
    The output sets are rows of one buffer per output, kept until the parent has picked which
    runs it checks. Timed runs commit to their outputs with a digest sent with the timing;
    the calls of a burst, with the bytes at positions the parent names once the burst is over.
    """

    ROW_ALIGN = 256

    def __init__(self, challenge, solve_call, copies: List[PreparedCall],
                 initial: List[Dict[str, torch.Tensor]], directions: Dict[str, str],
                 device: torch.device, retain_bytes: int, max_runs: int):
        self.challenge, self.solve_call, self.copies = challenge, solve_call, copies
        self.initial, self.directions, self.device = initial, directions, device
        self.bases = [{name: snap.clone() for name, snap in c.input_snapshots.items()}
                      for c in copies]
        rows = {}
        for name in copies[0].outputs:
            t = initial[0][name]
            need = t.numel() * t.element_size() + 2 * GUARD_BYTES
            rows[name] = -(-need // self.ROW_ALIGN) * self.ROW_ALIGN
        if device.type == "cuda":   # a quarter of what is free now, at most retain_bytes
            retain_bytes = min(retain_bytes, torch.cuda.mem_get_info(device)[0] // 4)
        # as many output sets as the timed runs or the longest burst use, memory allowing
        count = max(1, min(max(max_runs, MAX_BURST_CALLS),
                           retain_bytes // max(sum(rows.values()), 1)))
        self.stores = {name: torch.empty((count, width), dtype=torch.uint8, device=device)
                       for name, width in rows.items()}
        self.sets: List[Dict[str, GuardedOutput]] = [
            {name: GuardedOutput.in_row(name, self.stores[name][k], initial[0][name])
             for name in rows} for k in range(count)]
        self.generator = torch.Generator(device=device)
        # the burst's flush: made now, outside the grader's clock; the grader says how much of
        # it each call reads (enough that each call's GPU work outlasts the Python enqueueing it)
        self.burst_flush = (L2Flusher(device, BURST_FLUSH_BYTES) if device.type == "cuda"
                            else None)
        # every burst's arguments, made now rather than inside the grader's clock
        self.burst_arguments = [self.arguments(j) for j in range(len(self.sets))]
        # the probe's kernels loaded now: CUDA loads a module on its first launch, which must
        # not land inside the grader's clock
        self.probe(1, {name: [0] for name in self.stores})

    def _copy_of(self, run: int) -> int:
        return run % len(self.copies)

    def _set_of(self, run: int) -> Dict[str, GuardedOutput]:
        return self.sets[run % len(self.sets)]

    def reset_set(self, run: int) -> None:
        """Output set of ``run`` as the run must find it: poisoned, or the initial contents."""
        c = self._copy_of(run)
        initial = self.initial[c]
        for name, out in self._set_of(run).items():
            if self.directions[name] == "out":   # poisoned, or the value the challenge promised
                fill_initial_(out.written(), self.copies[c].outputs[name].initial)
            else:
                out.written().copy_(initial[name])

    def arguments(self, run: int) -> Dict[str, Any]:
        copy = self.copies[self._copy_of(run)]
        return {**copy.args, **{name: out.view for name, out in self._set_of(run).items()}}

    def perturb(self, nonce: int, run: int) -> None:
        """Rewrite the run's input copy from its base under the parent's nonce."""
        c = self._copy_of(run)
        perturb(self.challenge, self.copies[c].args, self.bases[c], self.directions,
                run_generator(self.device, nonce, run, self.generator))

    def outputs(self, run: int) -> Dict[str, torch.Tensor]:
        return {name: out.written() for name, out in self._set_of(run).items()}

    def follows_current_stream(self, gate_us: float = 50_000.0) -> bool:
        """Whether ``solve``'s work waits for the work queued before it on the current stream
        (False for a solve that launches on a non-blocking stream of its own and never waits:
        its kernels may read inputs the grader is still writing, and the stream's events do not
        see them). The current stream is held by a spin of ``gate_us``; the outputs are read on
        a stream of the harness's own while it spins: written already means the solve did not
        wait. A solve that waits for the device itself returns after the spin: it waits."""
        if self.device.type != "cuda":
            return True
        self.reset_set(0)
        self.perturb(0x5EED, 0)
        synchronize(self.device)
        flat = lambda t: t.contiguous().view(-1).view(torch.uint8)   # noqa: E731
        before = {name: flat(t).clone() for name, t in self.outputs(0).items()}
        side = torch.cuda.Stream(self.device)
        cover = LaunchCover()
        gate = torch.cuda.Event()
        torch.cuda._sleep(int(cover.cycles_per_us * gate_us))
        gate.record()
        self.solve_call(self.arguments(0))
        early = False
        while not early and not gate.query():
            with torch.cuda.stream(side):
                early = any(not torch.equal(flat(t), before[name])
                            for name, t in self.outputs(0).items())
            early = early and not gate.query()    # written while the current stream waited
        synchronize(self.device)
        self.reset_set(0)
        synchronize(self.device)
        return not early

    def time(self, nonce: int, budget_s: float, max_runs: int, on_host: bool,
             isolate: bool = False) -> Dict[str, Any]:
        runs = min(max_runs, len(self.sets))
        pending: Dict[int, Dict[str, Any]] = {}
        digests: Dict[int, str] = {}

        def before(i: int) -> None:
            self.reset_set(i)
            self.perturb(nonce, i)
            pending[i] = self.arguments(i)

        def call(i: int) -> None:
            self.solve_call(pending[i])

        def after(i: int) -> None:
            digests[i] = digest(self.outputs(i))
            pending.pop(i, None)

        timer = time_host if on_host else time_cuda
        kwargs = {} if on_host else {"flusher": L2Flusher(self.device), "isolate": isolate}
        timing = timer(call, before=before, after=after, budget_s=budget_s, max_runs=runs,
                       **kwargs)
        synchronize(self.device)
        data = timing.to_dict()
        data["digests"] = [digests[i] for i in timing.run_ids]
        data["burst_sets"] = len(self.sets)     # how long a burst can be, each call kept
        return data

    def burst(self, nonce: int, calls: int, cover_cycles: int, sync_every: int = 0,
              null: bool = False, isolate: bool = False, flush_bytes: int = 0) -> int:
        """``calls`` runs back to back (the parent times them on its own clock), each on its
        input copy rewritten under ``nonce`` and after an L2 flush of ``flush_bytes`` (which
        also keeps the GPU busy while the next call's Python runs), behind a spin that lets the
        first launches queue up (:func:`runner.timing.burst_loop`). ``null``: the same without
        the solve, for the parent's difference. ``sync_every`` and ``isolate``: the device
        drained before an input copy is rewritten (and, isolated, before each call)."""
        calls = max(1, int(calls))
        arguments = self.burst_arguments
        sets = len(arguments)
        if self.burst_flush is None:
            flush = lambda: None   # noqa: E731
        else:
            flush = self.burst_flush.sized(flush_bytes or flush_bytes_of(self.device))
        solve = None if null else (lambda j: self.solve_call(arguments[j % sets]))
        started = time.perf_counter()
        if self.device.type == "cuda" and cover_cycles > 0:
            torch.cuda._sleep(int(cover_cycles))
        burst_loop(calls, lambda j: self.perturb(nonce, j), solve, flush, isolate=isolate,
                   sync_every=sync_every, sync=lambda: synchronize(self.device))
        enqueued = time.perf_counter()
        synchronize(self.device)
        # the child's own view, for people reading the result (the grader believes its clock)
        self.last_burst = {"enqueue_s": enqueued - started,
                           "wall_s": time.perf_counter() - started}
        return calls

    def probe(self, calls: int, positions: Dict[str, List[int]]) -> Dict[str, str]:
        """The bytes at ``positions`` of each output of the first ``calls`` runs, base64 of
        [calls, positions] (inline: no file to write inside the grader's clock)."""
        out = {}
        for name, store in self.stores.items():
            index = torch.tensor([GUARD_BYTES + int(p) for p in positions.get(name, [])][:4096],
                                 dtype=torch.long, device=store.device)
            rows = torch.arange(calls, device=store.device) % store.shape[0]
            values = store.index_select(1, index).index_select(0, rows).to("cpu").contiguous()
            out[name] = base64.b64encode(values.numpy().tobytes()).decode()
        return out

    def reveal(self, indices: List[int]) -> List[Tuple[int, Dict[str, torch.Tensor], List[str]]]:
        """The outputs (on the CPU) and guard damage of each run in ``indices``; afterwards
        every output set is reset for the next phase."""
        out = []
        for i in indices[:64]:
            outputs = {n: t.detach().to("cpu").clone() for n, t in self.outputs(int(i)).items()}
            damage = [m for m in (g.damage() for g in self._set_of(int(i)).values()) if m]
            out.append((int(i), outputs, damage))
        for run in range(len(self.sets)):
            self.reset_set(run)
        synchronize(self.device)
        return out


def run_performance(challenge, solve_call, job: Job, channel: Channel, device: torch.device) -> None:
    directions = directions_of(challenge.get_solve_signature())
    channel.progress("running the performance test")
    first = performance_case(challenge, copy_seed(job.seed, 0))
    initial = [{n: first[n].clone() for n, d in directions.items() if d != "in"}]
    copies = [prepare_call(first, directions)]
    del first
    call_and_sync(solve_call, copies[0], device)
    report_call(channel, protocol.PERF_FIRST, {}, copies[0], directions)
    bench: Optional[PerfBench] = None
    while True:
        command = channel.receive()
        name = command.get("command")
        if name == protocol.CMD_TIME:
            for k in range(1, job.perf_copies):
                case = performance_case(challenge, copy_seed(job.seed, k))
                initial.append({n: case[n].clone() for n, d in directions.items() if d != "in"})
                copies.append(prepare_call(case, directions))
                del case
            bench = PerfBench(challenge, solve_call, copies, initial, directions, device,
                              job.retain_bytes, int(command.get("max_runs", MAX_TIMED_RUNS)))
            follows = _guarded(bench.follows_current_stream, device)
            channel.progress("timing")
            data = _guarded(lambda: bench.time(int(command["nonce"]), float(command["budget_s"]),
                                               int(command.get("max_runs", MAX_TIMED_RUNS)),
                                               on_host=device.type != "cuda",
                                               isolate=not follows), device)
            tampered = _tampering()
            if tampered:
                channel.send(protocol.TAMPERING, {"message": f"the harness's functions were "
                                                             f"changed during the run ({tampered})"})
                return
            channel.send(protocol.TIMING, data)
        elif name == protocol.CMD_BURST and bench is not None:
            calls = _guarded(lambda: bench.burst(int(command["nonce"]), int(command["calls"]),
                                                 int(command.get("cover_cycles", 0)),
                                                 int(command.get("sync_every", 0)),
                                                 bool(command.get("null", False)),
                                                 bool(command.get("isolate", False)),
                                                 int(command.get("flush_bytes", 0))), device)
            channel.send(protocol.BURST_DONE, {"calls": calls, **bench.last_burst})
        elif name == protocol.CMD_PROBE and bench is not None:
            values = bench.probe(int(command.get("calls", 0)), dict(command.get("positions", {})))
            channel.send(protocol.BURST_PROBE, {"values": values})
        elif name == protocol.CMD_REVEAL and bench is not None:
            phase = str(command.get("phase"))
            for index, outputs, damage in bench.reveal(list(command.get("indices", []))):
                channel.send(protocol.SAMPLE, {"phase": phase, "index": index,
                                               "modified_inputs": [], "guard_damage": damage},
                             outputs)
        elif name == protocol.CMD_FRESH:
            run_fresh(challenge, solve_call, job, channel, device, copies[0], directions)
        elif name == protocol.CMD_PROFILE:      # --action profile (runner/profiling.py)
            channel.progress("profiling one call")
            channel.send(protocol.PROFILE, _guarded(lambda: profile_solution(
                solve_call, copies[0].args, device, job.to_dict(), command), device))
        else:   # finish, or the parent has gone
            return


def _guarded(work, device: torch.device):
    try:
        return work()
    except (RuntimeError, MemoryError) as exc:
        if isinstance(exc, SubmissionError):
            raise
        raise classify_runtime_error(exc)


def run_fresh(challenge, solve_call, job: Job, channel: Channel, device: torch.device,
              target: PreparedCall, directions: Dict[str, str]) -> None:
    """Fresh random inputs written into the same buffers: answers cached by shape, by pointer
    or from an earlier call now fail."""
    fresh = performance_case(challenge, fresh_seed(job.seed))
    target.refill(fresh, directions)
    call_and_sync(solve_call, target, device)
    report_call(channel, protocol.PERF_FRESH, {}, target, directions)


def execute(job: Job, channel: Channel) -> None:
    """Run the submission side of ``job``, reporting through ``channel``; a problem in the
    submission is sent as an ``error`` message (our own bugs propagate)."""
    device = torch.device(job.device)
    if device.type == "cuda":
        device = torch.device("cuda", device.index or 0)
        torch.cuda.set_device(device)
        if job.gpu_memory_fraction:
            torch.cuda.set_per_process_memory_fraction(job.gpu_memory_fraction, device)
    channel.send(protocol.READY, {})
    challenge = load_challenge(find_challenge(job.challenge_path), device)
    challenge.seed = job.seed
    try:
        channel.progress("compiling" if job.language == "cuda" and not job.library_path
                         else "loading")
        solve_call = languages.backend(job.language).load(
            Path(job.solution_path), challenge, device, extra_flags=job.nvcc_flags,
            library_path=job.library_path, build_info=job.build_info)
        run_cases(challenge, solve_call, job, channel, device)
        # the grader says whether to go on: after a failed functional test it does not
        if (job.action == "submit" and job.performance
                and channel.receive().get("command") == protocol.CMD_PERF):
            run_performance(challenge, solve_call, job, channel, device)
    except SubmissionError as exc:
        channel.send(protocol.ERROR, {"verdict": exc.verdict, "message": exc.message,
                                      "details": exc.details})
    except (MemoryError, torch.cuda.OutOfMemoryError) as exc:
        err = classify_runtime_error(exc)
        channel.send(protocol.ERROR, {"verdict": err.verdict, "message": err.message,
                                      "details": ""})
    channel.send(protocol.DONE, {})


class MemoryChannel:
    """The conversation in one process (``--no-sandbox``): every message goes straight to the
    grader's side, and its commands come back in a queue."""

    def __init__(self, conversation, progress: Callable[[str], None] = lambda m: None):
        self._conversation = conversation
        self._progress = progress
        self._commands: List[Dict[str, Any]] = []

    def progress(self, message: str) -> None:
        self._progress(message)

    def send(self, kind, payload, tensors=None) -> None:
        message = protocol.Message(kind, json.loads(json.dumps(payload)),
                                   {k: v.detach().to("cpu").clone() for k, v in (tensors or {}).items()})
        self._commands += self._conversation.on_message(message, time.perf_counter())

    def receive(self) -> Dict[str, Any]:
        return self._commands.pop(0) if self._commands else {}
