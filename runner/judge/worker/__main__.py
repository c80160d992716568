"""``python -m runner.judge.worker``: one worker (:func:`runner.judge.worker.loop.main`)."""

import sys

from runner.judge.worker.loop import main

if __name__ == "__main__":      # importing the package's modules one by one runs nothing
    sys.exit(main())
