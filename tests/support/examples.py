"""How many examples a property test runs: its own count in `make test`, a fifth of it (at
least 5) under the `check` profile that `make check` loads (`--hypothesis-profile=check`,
registered in tests/conftest.py, where a test without its own count runs 20)."""

from __future__ import annotations

from hypothesis import settings

DEFAULT = 100  # hypothesis's own default, what the counts below are written against


def examples(count: int) -> int:
    """`count` scaled by the loaded profile (read when the test module is imported)."""
    return max(5, count * settings.default.max_examples // DEFAULT)
