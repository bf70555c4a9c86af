"""The speed layer: ``POST /v1/events`` appends to a Redis Stream; ``./recomart stream`` consumes it.

- :mod:`~recomart.stream.events`: the event schema and the stream's key names and entry format;
- :mod:`~recomart.stream.intake`: the API router (validation, API key, append, backlog cap, counters);
- :mod:`~recomart.stream.lag`: how far the worker is behind (``/metrics``), and the safe trim point;
- :mod:`~recomart.stream.tables`: ``raw.stream_events`` and the worker's bookkeeping tables;
- :mod:`~recomart.stream.batch`: one micro-batch into Postgres (COPY, dedupe, ledger) and Feast (push);
- :mod:`~recomart.stream.worker`: the consumer-group loop (read, reclaim, acknowledge, trim, retry).
"""
