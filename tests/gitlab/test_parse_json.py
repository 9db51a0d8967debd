"""The webhook's JSON reading (`parse_json`: orjson, with the standard library where they
would differ) accepts and reads exactly what `json.loads` does, so a faster intake changes
no answer and no stored event."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bot.gitlab.body import parse_json

BIG = st.integers(min_value=-(2**80), max_value=2**80)
DIGITS = st.text(alphabet="0123456789", min_size=15, max_size=45)  # zero shas, long ids
TEXT = st.one_of(st.text(max_size=20), DIGITS, DIGITS.map(lambda d: f"at {d}: {d}"))
LEAVES = st.one_of(st.none(), st.booleans(), BIG, st.floats(allow_nan=True), TEXT)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXT, inner, max_size=5)),
    max_leaves=25,
)


def outcome(read: Any, raw: bytes) -> tuple[str, str]:
    try:
        value = read(raw)
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__)
    return ("read", _canonical(value))


def _canonical(value: Any) -> str:
    """A text that is equal for equal values, NaN included, with the Python types kept
    (an int is not a float)."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"float:{value!r}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return f"int:{value}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_canonical(v)}" for k, v in value.items()) + "}"
    return repr(value)


@given(value=VALUES, spaced=st.booleans(), ascii_only=st.booleans())
def test_any_json_document_reads_as_the_standard_library_reads_it(
    value: Any, spaced: bool, ascii_only: bool
) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    raw = json.dumps(value, separators=separators, ensure_ascii=ascii_only).encode()
    assert outcome(parse_json, raw) == outcome(json.loads, raw)


@given(value=VALUES, cut=st.integers(min_value=0), junk=st.binary(max_size=4))
def test_a_broken_body_is_refused_or_read_as_the_standard_library_does(
    value: Any, cut: int, junk: bytes
) -> None:
    raw = json.dumps(value).encode()
    at = cut % (len(raw) + 1)
    broken = raw[:at] + junk + raw[at:]
    assert outcome(parse_json, broken) == outcome(json.loads, broken)


def test_the_cases_where_orjson_alone_would_read_differently() -> None:
    cases = [
        b'{"object_attributes": {"id": 1180591620717411303424}}',  # 2**70: an int, not a float
        b"[-9223372036854775809, 18446744073709551616]",
        b'{"before_sha": "0000000000000000000000000000000000000000", "id": 12345678901234567890123}',
        b'{"title": "\\ud800"}',  # a lone surrogate escape
        b"[NaN, Infinity, -Infinity]",
        b"[" * 2000 + b"]" * 2000,  # too deep: RecursionError, as before
    ]
    for raw in cases:
        assert outcome(parse_json, raw) == outcome(json.loads, raw), raw[:60]
    assert parse_json(cases[0])["object_attributes"]["id"] == 2**70
    assert outcome(parse_json, cases[-1]) == ("refused", "RecursionError")
