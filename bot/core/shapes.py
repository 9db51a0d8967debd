"""Secrets by their shape, in text that comes from outside (pod logs, helm output, diffs, test
output, `!log` lines): the values nobody configured but that still must not be stored or shown.

Built on detect-secrets' plugins (keywords in many spellings, URL credentials, AWS keys, JWTs,
high-entropy quoted strings; private key blocks are masked whole here), plus the shapes they miss in logs: `KEY=value`
where the key only ends in a secret word (`DB_PASSWORD=`, `PGPASSWORD=`), command-line flags
(`--password X`), custom auth headers (`X-Deploy-Auth: ...`) and prose (`the password is X`).
The key stays, so the line still reads; the value becomes `[redacted]`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

MASK = "[redacted]"

# a key that names a secret: it may only end in the word (DB_PASSWORD, X-Deploy-Auth)
_WORD = (
    r"(?:passw(?:or)?d|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|credentials?|auth(?!ors?\b|ored\b|oring\b)[a-z]*|session[_-]?id|cookie)"
)
_KEY = rf"[a-z0-9_.-]*?{_WORD}[a-z0-9_.-]*"
_VALUE = r"[^\s\"',;]+"
_KEY_VALUE = re.compile(
    rf"(?i)(?<![a-z0-9_.-])({_KEY})([\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?({_VALUE})"
)
_FLAG = re.compile(rf"(?i)(?<![\w-])(--?{_KEY})(\s+)([\"']?)({_VALUE})")
_PROSE = re.compile(
    r"(?i)\b((?:passw(?:or)?d|passphrase|secret|token|api key)s?)(\s+(?:is|was|are|were)\s+"
    rf"(?:now\s+|still\s+)?)([\"']?)({_VALUE})"
)
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/\s@]+:)([^@\s/]+)(?=@)")
_PRIVATE_KEY = re.compile(
    r"(-----BEGIN [A-Z ]*PRIVATE KEY-----)(.*?)(-----END [A-Z ]*PRIVATE KEY-----)", re.S
)


def _masked(m: re.Match[str]) -> str:
    """Every group but the last kept, the last (the value) masked; a value that is already
    the mask or a template placeholder (`<token>`, `${X}`) is left alone."""
    value = m.group(m.lastindex or 0)
    if value == MASK or value.startswith(("<", "${", "$(", "{{", "*")):
        return m.group(0)
    return "".join(g or "" for g in m.groups()[:-1]) + MASK


@lru_cache(maxsize=1)
def _plugins() -> tuple[Any, ...]:
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.keyword import KeywordDetector

    return (
        KeywordDetector(), BasicAuthDetector(), AWSKeyDetector(), JwtTokenDetector(),
        Base64HighEntropyString(limit=4.5),
    )  # fmt: skip


# a line none of the plugins could match: no quote, `:`, `=` or secret-ish word
_CANDIDATE = re.compile(r"(?i)[\"':=]|akia|eyj|pass|secret|token|key|auth")


def _detected(line: str) -> set[str]:
    """The secret values detect-secrets' plugins find in one line (they need no settings
    context for `analyze_line`; the YAML rules cover the `key: value` form of logs)."""
    found: set[str] = set()
    if not _CANDIDATE.search(line):
        return found
    for plugin in _plugins():
        for hit in plugin.analyze_line(filename="pod.yaml", line=line, line_number=1):
            if hit.secret_value and len(hit.secret_value) >= 4:
                found.add(hit.secret_value)
    return found


def scrub(text: str) -> str:
    """`text` with every secret-shaped value masked (keys and the rest of the line kept)."""
    text = _PRIVATE_KEY.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    for pattern in (_URL, _KEY_VALUE, _FLAG, _PROSE):
        text = pattern.sub(_masked, text)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        for value in sorted(_detected(line), key=len, reverse=True):
            if value != MASK and MASK not in value:
                line = line.replace(value, MASK)
        lines[i] = line
    return "\n".join(lines)
