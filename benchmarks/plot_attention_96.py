"""Effective bandwidth against seq_len (32 heads, 128 dims) per implementation, from the JSON
that ``attention_96.py`` writes, with the read floor of the same bytes (solid black) and the
device's peak (dashed) as lines.

    python benchmarks/plot_attention_96.py benchmarks/results/attention_96.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict


def plot(results: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [tuple(s) for s in results["seq_sweep"]]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for impl in dict.fromkeys(r["impl"] for r in results["rows"]):
        points = sorted((r["shape"][1], r["gbps"]) for r in results["rows"]
                        if r["impl"] == impl and tuple(r["shape"]) in sweep and "gbps" in r)
        if points and impl.startswith("read floor"):
            ax.plot(*zip(*points), color="black", linewidth=2, label=impl)
        elif points:
            ax.plot(*zip(*points), marker="o", label=impl)
    ax.axhline(results["peak_gbps"], color="black", linestyle="--",
               label=f"peak {results['peak_gbps']:.0f} GB/s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("seq_len (32 heads, head_dim 128)")
    ax.set_ylabel("effective bandwidth (GB/s)")
    ax.set_title(f"Challenge 96: INT8 KV-cache attention on {results['device']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/attention_96.json")
    plot(json.loads(source.read_text()), source.with_suffix(".png"))
    print(f"wrote {source.with_suffix('.png')}")
