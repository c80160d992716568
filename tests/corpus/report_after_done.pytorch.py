"""Cheat: answers correctly, and makes the harness's report channel send one more (forged)
case result after its "done"."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    output.copy_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
    child = sys.modules.get("runner.sandbox.child")
    if child is None or getattr(child.PipeChannel, "_patched", False):
        return
    original = child.PipeChannel._write

    def write(self, record):
        original(self, record)
        if record.get("kind") == "done":
            original(self, {"kind": "case", "payload": {"index": 0, "modified_inputs": [],
                                                        "guard_damage": []}})

    child.PipeChannel._write = write
    child.PipeChannel._patched = True
