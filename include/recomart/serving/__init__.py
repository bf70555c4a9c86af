"""The live API: the Redis copy of the live generation (Postgres as fallback), session re-ranking
through Feast's online read, hot reload of generations and ``@champion``, Prometheus metrics."""
