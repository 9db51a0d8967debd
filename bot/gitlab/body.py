"""Reading a webhook body as JSON: exactly what `json.loads` accepts and returns, faster.

orjson reads a GitLab payload about four times faster than the standard library; the bodies
it would read differently go to `json.loads`, so the route's answers and the stored events do
not depend on which parser read them.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")  # every digit reads as "0"
_RUN = b"0" * 19  # 19 digits: an integer that may not fit in 64 bits
_BLANK_OR_MINUS = frozenset(b" \t\r\n-")
_BEFORE_NUMBER = frozenset(b":[,")


def _long_number(raw: bytes) -> bool:
    """Whether the body holds a number of 19 digits or more (orjson reads integers beyond 64
    bits as floats). A run of digits inside a string (a zero sha) is not one. Scans in C:
    a regular expression takes ten times as long as the parse."""
    digits = raw.translate(_AS_ZERO)
    at = digits.find(_RUN)
    while at >= 0:
        before = at - 1  # what precedes the run: a number follows `:`, `[` or `,` (or nothing)
        while before >= 0 and raw[before] in _BLANK_OR_MINUS:
            before -= 1
        if before < 0 or raw[before] in _BEFORE_NUMBER:
            return True
        at = digits.find(_RUN, at + len(_RUN))  # inside a run, a digit precedes: not a start
    return False


def parse_json(raw: bytes) -> Any:
    """A webhook body as JSON, exactly as `json.loads` reads it, about four times faster for a
    GitLab payload (orjson). Bodies orjson would read differently go to `json.loads`: what it
    refuses (lone surrogate escapes, NaN, nesting over 1,024 levels) and numbers of 19 digits
    or more (an integer beyond 64 bits, which the standard library keeps as an int and the
    typed parse then calls out of range)."""
    if not _long_number(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)
