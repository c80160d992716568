"""The judge's worker host: the program that grades submissions, one process per GPU (or CPU
slot), each talking only to the API server.

- :mod:`.loop`          a worker: its claim loop (``python -m runner.judge.worker``)
- :mod:`.settings`      its settings and command line
- :mod:`.api_client`    the server's worker endpoints as it calls them
- :mod:`.broker_feed`   a fleet's queue as it reads it
- :mod:`.slots`         its lock files (one worker per GPU)
- :mod:`.job_process`   the process that grades one job, as the worker sees it; :mod:`.jobrun`
                        that process itself; :mod:`.prewarm` the next one, parked beforehand
- :mod:`.supervisor`    starts and restarts a host's workers (``serve``)
"""
