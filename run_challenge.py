#!/usr/bin/env python3
"""Grade a solution of a GPU kernel challenge: see `python run_challenge.py --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
