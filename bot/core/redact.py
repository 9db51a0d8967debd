"""Keeps secrets out of chat, logs and the SAL by replacing known secret values (and, in text
from outside, every secret shape: `Redactor.outside`).

Values are registered as the bot uses them (already stripped of surrounding whitespace by
`read_secret`), so a token echoed back by a server without its trailing newline is still
found; log records are redacted including their tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.core.shapes import MASK, scrub


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

    def outside(self, text: str) -> str:
        """Text from outside (pod logs, helm output, diffs, `!log` lines) before it is
        stored or shown: the configured values and every secret shape (`bot.core.shapes`)."""
        return scrub(self(text))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record: its rendered message, and the traceback
    and stack it carries (exception messages often quote a request, headers included)."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor
        self._render = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        rendered = record.getMessage()
        clean = self.redactor(rendered)
        if clean != rendered:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # formatters print exc_text when it is set: render the traceback once, redacted
            record.exc_text = self._render.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True
