"""Correct only if it cannot reach the port named in the file next to it (the test writes it)."""
import socket
import sys
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _correct import attention  # noqa: E402

PORT = int((Path(__file__).parent / "network_probe.port").read_text())


def solve(Q, K_int8, V_int8, k_scale, v_scale, output, num_heads, seq_len, head_dim):
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    except OSError:
        output.copy_(attention(Q, K_int8, V_int8, k_scale, v_scale, head_dim))
        return
    raise RuntimeError("reached the network from inside the sandbox")
