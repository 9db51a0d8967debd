"""The store's one migration history (Alembic), for SQLite and PostgreSQL alike.

`versions/` holds the revisions; `env.py` runs them on the connection the store hands over
(`bot/store/migrate.py`). Revisions are frozen once released: change the schema by adding one.
"""
