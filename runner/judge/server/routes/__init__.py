"""The API server's routes, one module per audience, each a FastAPI router over
:class:`runner.judge.server.service.JudgeService` (every route is a thin layer over it):

- :mod:`.submissions`   users: LeetGPU's WebSocket protocol and the HTTP API
                        (:mod:`.event_stream` sends a submission's events over the WebSocket)
- :mod:`.challenges`    users and the page: the challenges and accelerators offered
- :mod:`.page`          the web page, and who a token is
- :mod:`.leaderboards`  the boards; an admin's review of an entry
- :mod:`.workers`       the workers' endpoints (a token with the worker role)
- :mod:`.operations`    operators: health and metrics
- :mod:`.http`          what they share: a refusal's JSON answer, a bounded request body
"""
