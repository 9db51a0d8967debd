"""Jinja filters for the pages: safe links (http/https only), task links, times."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from bot.core.text import format_age

_TASK_RE = re.compile(r"\bT\d{1,9}\b")


def href(url: str | None) -> str | None:
    """The URL if it is http(s) or a local path, else None (no `javascript:` links)."""
    if not url:
        return None
    if url.startswith(("http://", "https://")) or (
        url.startswith("/") and not url.startswith("//")
    ):
        return url
    return None


def filters(task_url: str) -> dict[str, Callable[..., Any]]:
    def task_link(task: str) -> str:
        return task_url.replace("{task}", quote(task, safe=""))

    def link_tasks(text: str) -> Markup:
        """Escape `text`, then link each T123 in it."""
        out, last = [], 0
        for m in _TASK_RE.finditer(text):
            out.append(escape(text[last : m.start()]))
            out.append(Markup('<a href="{}">{}</a>').format(task_link(m.group()), m.group()))
            last = m.end()
        out.append(escape(text[last:]))
        return Markup("").join(out)

    def when(ts: float | None) -> str:
        if ts is None:
            return "-"
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def ago(ts: float | None) -> str:
        return "-" if ts is None else format_age(datetime.now(UTC).timestamp() - ts) + " ago"

    return {"href": href, "task_link": task_link, "link_tasks": link_tasks, "when": when,
            "ago": ago}  # fmt: skip
