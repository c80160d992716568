"""``--action profile``: the grading of a submit without the timing, and one profiled call.

:class:`ProfileGrading` is :class:`runner.grader.conversation.Grading` with two changes: the performance
case is checked (its first call and the fresh-inputs check) but not timed, and once everything
passed the grader sends ``profile`` (:data:`runner.protocol.CMD_PROFILE`), naming the Nsight
Compute it found on the host where counters may be read, and expects one ``profile`` message
back. That message is information for the user (:mod:`runner.grader.profile.report`): it changes no
verdict; a malformed one is a protocol violation like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from runner import devices, protocol
from runner.grader.conversation import Grading
from runner.grader.plan import case_params
from runner.grader.profile.ncu import NCU_LAUNCH_COUNT, NCU_TIMEOUT_S, ncu_install_dir, ncu_plan
from runner.grader.profile.report import NO_GPU, build_profile
from runner.protocol import Message
from runner.report import Result

NOT_TIMED = "--action profile does not time the solution (--action submit does)"


class ProfileGrading(Grading):
    def __init__(self, challenge, plan, options, compile_only: bool = False,
                 ncu: Optional[Path] = None, ncu_reason: str = ""):
        super().__init__(challenge, plan, options, compile_only=compile_only)
        self.timing_enabled = False
        self.ncu, self.ncu_reason = ncu, ncu_reason
        self.profile_payload: Optional[Dict[str, Any]] = None
        self.profile_asked = False

    def _may_profile(self) -> bool:
        return ((self.options.device.type == "cuda" or self.options.time_on_cpu)
                and bool(self.perf_reports)
                and all(r.passed for r in self.perf_reports)
                and all(t.passed for t in self.tests) and self.child_error is None)

    def on_message(self, message: Message, received_at: float) -> List[Dict[str, Any]]:
        commands = super().on_message(message, received_at)
        if message.kind == protocol.PROFILE:
            self.profile_payload = message.payload
            return [{"command": protocol.CMD_FINISH}]
        if (message.kind == protocol.PERF_FRESH and not self.profile_asked
                and commands == [{"command": protocol.CMD_FINISH}] and self._may_profile()):
            self.profile_asked = True
            self.transcript.expect(protocol.PROFILE)
            self.options.progress("profiling one call of solve")
            return [{"command": protocol.CMD_PROFILE,
                     "ncu": str(self.ncu) if self.ncu else None,
                     "ncu_timeout_s": NCU_TIMEOUT_S, "launch_count": NCU_LAUNCH_COUNT}]
        return commands

    def finish(self, result: Result) -> Result:
        result.action = "profile"
        if (result.performance and not result.performance.get("timed")
                and self.options.device.type == "cuda"):
            result.performance["reason"] = NOT_TIMED
        result.profile = build_profile(self.profile_payload, self.context(result),
                                       self.ncu_reason)
        return result

    def context(self, result: Result) -> Dict[str, Any]:
        """What the grader knows itself: the device, its SMs, the case's bytes and floor."""
        device = self.options.device
        context: Dict[str, Any] = {"device": result.device}
        case = self.plan.perf_case
        if case is not None:
            context["params"] = case_params(case)
        if device.type != "cuda" and not self.options.time_on_cpu:
            context["reason"] = NO_GPU
            return context
        if result.verdict != "accepted":
            context["reason"] = ("nothing profiled: the solution did not pass the tests "
                                 "(profile a correct solution)")
        elif not self.profile_asked:
            context["reason"] = "nothing profiled: the performance case did not run"
        if device.type != "cuda":
            return context
        try:
            context["sm_count"] = torch.cuda.get_device_properties(device).multi_processor_count
            nbytes = self.challenge.bytes_moved(case) if case is not None else None
            context["bytes"] = nbytes
            ceiling = devices.ceiling(device)
            if ceiling:
                context["ceiling_gbps"] = ceiling.gbps
            if nbytes:
                floor = devices.case_floor(device, nbytes, self.challenge.bytes_written(case))
                if floor:
                    context["floor_us"] = floor.ms * 1e3
                elif ceiling:
                    context["floor_us"] = nbytes / (ceiling.gbps * 1e9) * 1e6
        except Exception:  # noqa: BLE001 - the profile is information: go on without
            pass
        return context


def profile_grading(challenge, plan, options, compile_only: bool):
    """(the grading, folders the jail must also show): Nsight Compute's install where it may
    run here (:func:`runner.grader.profile.ncu.ncu_plan`)."""
    on_gpu = options.device.type == "cuda" or options.time_on_cpu    # (the CPU: tests)
    ncu, reason = ncu_plan(options.isolate) if on_gpu else (None, "")
    binds = [ncu_install_dir(ncu)] if ncu is not None else []
    return ProfileGrading(challenge, plan, options, compile_only, ncu, reason), binds
