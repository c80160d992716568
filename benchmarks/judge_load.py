"""Load and chaos for the judge (CPU workers, no GPU needed): 200 submissions from 50
concurrent LeetGPU-style WebSocket clients while a worker is SIGKILLed every few seconds;
every submission must reach exactly one terminal status with the right verdict.

    python benchmarks/judge_load.py --submissions 200 --clients 50 --kill-every 10
    python benchmarks/judge_load.py --redis-url redis://... --postgres-url postgresql://...   # a fleet

The options are those of ``python -m runner.judge.loadtest`` (this is a thin entry point).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.judge.loadtest import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
