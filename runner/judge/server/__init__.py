"""The judge's API server: the program that admits submissions and hands them to workers.

- :mod:`.app`          the ASGI app (FastAPI): its lifespan and its route groups
- :mod:`.routes`       the routes, one module per audience (users, the page, workers, operators)
- :mod:`.service`      admission, leases, worker presence, the reaper (independent of HTTP)
- :mod:`.leaderboard`  boards per challenge x accelerator (and language), verified by a second
                       run; :mod:`.candidates` their entries, timings and order
- :mod:`.auth`         bearer tokens with roles, compared in constant time
- :mod:`.storage`      the source of truth (SQLite or PostgreSQL)
- :mod:`.queues`       delivery to workers: the store itself, or Dramatiq on Redis
- :mod:`.metrics`      Prometheus metrics
- ``static/``          the web page
"""
