"""The online judge: a service that takes untrusted submissions over LeetGPU's WebSocket
protocol (or HTTP), stores them, queues them per accelerator and has workers grade them with
:mod:`runner.sandbox`'s jailed child, one job per GPU, without losing or double-counting one.

Modules, one job each:

- :mod:`.config`     the YAML configuration (tokens, limits, store, queue, workers)
- :mod:`.auth`       bearer tokens with roles, compared in constant time
- :mod:`.protocol`   parsing and validating submissions (clear errors for malformed input)
- :mod:`.catalogue`  the server's challenges and accelerators
- :mod:`.store`      the source of truth (SQLite in WAL mode): submissions, numbered events,
                     leases, admissions; :mod:`.store_pg` the same on PostgreSQL;
                     :mod:`.records` its schema and the records it takes and gives
- :mod:`.queues`     delivery to workers: the store itself (embedded) or Dramatiq on Redis
- :mod:`.service`    admission, leases, the reaper; :mod:`.app` its HTTP/WebSocket routes
- :mod:`.leaderboard` boards per challenge x accelerator (and language): candidates verified by a
                     second run with a new seed before they are ranked; :mod:`.candidates`
                     their entries, timings and order
- :mod:`.web`        the web page (``static/``) and the leaderboard routes
- :mod:`.metrics`    Prometheus metrics
- :mod:`.rejected`   the one refusal (message, code, HTTP status) every part raises
- :mod:`.worker`     a worker process bound to one GPU: its claim loop; :mod:`.worker_settings`
                     its settings and command line, :mod:`.worker_api` the API it calls,
                     :mod:`.slots` its lock files, :mod:`.jobprocess` the job process as it sees
                     it; :mod:`.jobrun` the process that grades one job for it;
                     :mod:`.supervisor` starts a host's workers
- :mod:`.client`     the LeetGPU-style client behind ``run_challenge.py --remote``
- :mod:`.cli`        ``run_challenge.py serve``

Load and chaos live outside the package: ``benchmarks/judge_load.py``.

``docs/judge.md`` describes the protocol, the guarantees and how to run one machine or a fleet.

The judge's dependencies are in the ``judge`` extra (``pip install -e ".[judge]"``).
"""
