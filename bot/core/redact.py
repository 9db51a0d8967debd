"""Keeps secrets out of chat, logs and the SAL by replacing known secret values."""

from __future__ import annotations

import logging
from collections.abc import Iterable

MASK = "[redacted]"


class Redactor:
    """Replaces every configured secret value (>= 4 chars) in a text."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the rendered message of every record."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        rendered = record.getMessage()
        clean = self.redactor(rendered)
        if clean != rendered:
            record.msg, record.args = clean, None
        return True
