"""The durable state: the SQLite/PostgreSQL store with its Alembic migrations, the SAL,
locks, alerts and leader election over the store (core tier: imports `bot.core`, `bot.config`)."""
