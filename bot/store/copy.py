"""`deploybot store copy`: move every row of one store into another, empty one.

The way from a single instance on SQLite to replicas on PostgreSQL (or back). Both stores
are first opened as the bot opens them (checked, migrated to the same head), then each
table is copied in foreign-key order in one transaction on the target, and PostgreSQL's id
sequences are moved past the copied ids. A target that holds any row is refused.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from bot.core.errors import StoreError
from bot.store.db import Store

CHUNK = 1000


async def copy_store(source: Store, target: Store) -> dict[str, int]:
    """Copy all rows; return the row count per table."""
    if source.url == target.url:
        raise StoreError(f"store copy: --from and --to are the same store ({source.describe()})")
    for store in (source, target):
        await store.open()  # integrity check and migrations, as the bot does
        await store.close()
    return await asyncio.to_thread(_copy, source, target)


def _copy(source: Store, target: Store) -> dict[str, int]:
    src_engine, dst_engine = source.engine(), target.engine()
    try:
        with src_engine.connect() as src, dst_engine.connect() as dst:
            src_meta, dst_meta = sa.MetaData(), sa.MetaData()
            src_meta.reflect(src)
            dst_meta.reflect(dst)
            src.rollback()
            dst.rollback()  # reflecting began a transaction
            tables = [t for t in dst_meta.sorted_tables if t.name != "alembic_version"]
            with dst.begin():
                for table in tables:
                    count = dst.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                    if count:
                        raise StoreError(
                            f"store {target.describe()} already holds data ({count} rows in"
                            f" {table.name}): copy only into an empty store"
                        )
                copied: dict[str, int] = {}
                for table in tables:
                    copied[table.name] = _copy_table(src, src_meta, dst, table)
                if target.postgres:
                    for table in tables:
                        if "id" not in table.columns:
                            continue
                        name = table.name
                        dst.exec_driver_sql(
                            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'),"  # noqa: S608
                            f" COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {name}"
                            f" HAVING pg_get_serial_sequence('{name}', 'id') IS NOT NULL"
                        )
            return copied
    finally:
        src_engine.dispose()
        dst_engine.dispose()


def _copy_table(
    src: sa.Connection, src_meta: sa.MetaData, dst: sa.Connection, table: sa.Table
) -> int:
    source_table = src_meta.tables.get(table.name)
    if source_table is None:
        return 0
    columns = [c.name for c in table.columns if c.name in source_table.columns]
    order = [source_table.columns[c.name] for c in source_table.primary_key.columns]
    query = sa.select(*(source_table.columns[c] for c in columns)).order_by(*order)
    total = 0
    result = src.execution_options(stream_results=True).execute(query)
    while chunk := result.fetchmany(CHUNK):
        dst.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in chunk])
        total += len(chunk)
    return total
