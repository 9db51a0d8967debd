"""Fixtures for the chat tests: a real SQLite store for the outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store.db import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "outbox.sqlite3")
    await store.open()
    yield store
    await store.close()
