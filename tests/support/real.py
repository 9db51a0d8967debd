"""The `real` marker, applied automatically: a test is `real` when what it uses (its
fixtures, its helpers, at any depth through test code) starts a real server (IRC, XMPP,
PostgreSQL, a registry, Chromium) or a `deploybot` process. The starters say so with
`@real`; `make check` runs the tests that are not `real`.
"""

from __future__ import annotations

import sys
import types
from typing import Any, TypeVar

T = TypeVar("T")
_FLAG = "__starts_a_real_server__"


def real(starter: T) -> T:
    """Mark a function or class that starts a real server or a `deploybot` process."""
    setattr(starter, _FLAG, True)
    return starter


def _codes(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out += _codes(const)
    return out


def reaches_real(fn: Any, depth: int = 6, seen: set[int] | None = None) -> bool:
    """True when `fn` (or the test code it calls, down to `depth`) names a real starter."""
    seen = seen if seen is not None else set()
    if id(fn) in seen or depth < 0:
        return False
    seen.add(id(fn))
    if getattr(fn, _FLAG, False):
        return True
    fn = getattr(fn, "__wrapped__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return isinstance(fn, type) and any(
            reaches_real(v, depth - 1, seen) for v in vars(fn).values() if callable(v)
        )
    names = {n for c in _codes(code) for n in c.co_names}
    scope = getattr(fn, "__globals__", {})
    found: list[Any] = [scope[n] for n in names if n in scope]
    found += [getattr(m, n) for m in found if isinstance(m, types.ModuleType) for n in names
              if hasattr(m, n)]  # fmt: skip
    for obj in found:
        if getattr(obj, _FLAG, False):
            return True
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("tests.") and reaches_real(obj, depth - 1, seen):
            return True
    return False


@real
def deploybot() -> list[str]:
    """The argv start of a `deploybot` process (this checkout, this interpreter)."""
    return [sys.executable, "-m", "bot.cli"]
