"""``python -m runner.judge.worker``: one worker (:func:`runner.judge.worker.loop.main`)."""

import sys

from runner.judge.worker.loop import main

sys.exit(main())
