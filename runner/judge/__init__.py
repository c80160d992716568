"""The online judge: a service that takes untrusted submissions over LeetGPU's WebSocket
protocol (or HTTP), stores them, queues them per accelerator and has workers grade them with
:mod:`runner.sandbox`'s jailed child, one job per GPU, without losing or double-counting one.

Three programs, one subpackage each, and what two of them share:

- :mod:`.server`          the API server: routes, admission, leases, leaderboards, the store,
                          the queue, metrics, the web page
- :mod:`.worker`          the worker host: one worker per GPU, its job processes, its supervisor
- :mod:`.client`          the LeetGPU-style client behind ``run_challenge.py --remote``
- :mod:`.serve`           ``run_challenge.py serve``: the server, its local workers, or both
- :mod:`.wire`            the submission protocol (LeetGPU's message, statuses, events)
- :mod:`.config`          the YAML configuration (tokens, limits, store, queue, workers)
- :mod:`.challenge_set`   the judge's challenges; :mod:`.accelerators` its accelerators
- :mod:`.broker`          the fleet's Redis broker (queue names) as server and workers see it
- :mod:`.rejected`        the one refusal (message, code, HTTP status) every part raises

Load and chaos live outside the package: ``benchmarks/judge_load.py``.

``docs/judge.md`` describes the protocol, the guarantees and how to run one machine or a fleet.

The judge's dependencies are in the ``judge`` extra (``pip install -e ".[judge]"``).
"""
