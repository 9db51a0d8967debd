"""Typed, path-naming access to untrusted JSON (webhook bodies), with no I/O.

A missing or mistyped field raises `MalformedEvent` naming its dotted path
(`object_attributes.stages`), so a bad delivery is one clear line in the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class MalformedEvent(ValueError):
    """The body claims to be a known event kind but a required field is missing or mistyped."""


class Fields:
    """Typed access to one JSON object, naming the dotted path of whatever is wrong."""

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise MalformedEvent(f"{path or 'body'}: expected an object, got {type_name(data)}")
        self._data = data
        self._path = path

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _raw(self, key: str, required: bool) -> Any:
        value = self._data.get(key)
        if value is None and required:
            raise MalformedEvent(f"{self._where(key)}: missing")
        return value

    def _typed(self, key: str, kind: type | tuple[type, ...], required: bool, label: str) -> Any:
        value = self._raw(key, required)
        if value is None or type(value) is kind:  # the usual case, without the checks below
            return value
        if isinstance(value, bool) and bool not in _as_tuple(kind) or not isinstance(value, kind):
            raise MalformedEvent(f"{self._where(key)}: expected {label}, got {type_name(value)}")
        return value

    def req_str(self, key: str) -> str:
        result: str = self._typed(key, str, True, "a string")
        return result

    def opt_str(self, key: str) -> str | None:
        result: str | None = self._typed(key, str, False, "a string")
        return result

    def req_int(self, key: str) -> int:
        result: int = self._typed(key, int, True, "an integer")
        self._in_range(key, result)
        return result

    def opt_int(self, key: str) -> int | None:
        result: int | None = self._in_range(key, self._typed(key, int, False, "an integer"))
        return result

    def _in_range(self, key: str, value: int | None) -> int | None:
        """GitLab ids and counts fit 64 bits; anything larger is no real event (and the
        store could not hold it)."""
        if value is not None and not INT64_MIN <= value <= INT64_MAX:
            raise MalformedEvent(f"{self._where(key)}: integer out of range")
        return value

    def opt_number(self, key: str) -> float | None:
        value = self._typed(key, (int, float), False, "a number")
        return None if value is None else float(value)

    def req_bool(self, key: str) -> bool:
        result: bool = self._typed(key, bool, True, "a boolean")
        return result

    def opt_bool(self, key: str) -> bool | None:
        result: bool | None = self._typed(key, bool, False, "a boolean")
        return result

    def req_obj(self, key: str) -> Fields:
        return Fields(self._raw(key, True), self._where(key))

    def opt_obj(self, key: str) -> Fields | None:
        value = self._raw(key, False)
        return None if value is None else Fields(value, self._where(key))

    def req_list(self, key: str) -> list[Any]:
        result: list[Any] = self._typed(key, list, True, "a list")
        return result

    def opt_list(self, key: str) -> list[Any]:
        result: list[Any] | None = self._typed(key, list, False, "a list")
        return result or []

    def keys(self) -> tuple[str, ...]:
        return tuple(str(k) for k in self._data)


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
