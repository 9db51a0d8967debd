"""Release ancestry: "does this environment contain commit X" and "is this move forward or
back", answered by the component's history, not by comparing version strings.

A release version is a tag of the component's repository; release A is *contained in*
release B when A's commit is an ancestor of (or the same as) B's: `git merge-base
--is-ancestor` in the plain-git mirror, GitLab's compare API otherwise
(`bot.control.releases`). Where there is no history to ask (upstream charts, dev builds, an
unreadable repository) the release order of the versions decides.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from bot.control.releases import ComponentSource
from bot.core.versions import parse_version

log = logging.getLogger("deploybot.model")
_CACHE_LIMIT = 4096


class Direction(StrEnum):
    """A move of an environment from what runs there to a target version."""

    SAME = "same"  # it runs the target already
    FORWARD = "forward"  # the target is not in what runs (newer, or another line of history)
    BACK = "back"  # the target is an ancestor of what runs: a step back
    UNKNOWN = "unknown"  # what runs is not known: treated as forward by every gate

    @property
    def gated(self) -> bool:
        """`requires` and `review` stand in the way of this move (forward or unknown)."""
        return self in (Direction.FORWARD, Direction.UNKNOWN)


def by_release_order(old: str, new: str) -> bool | None:
    """`old` sorts at or before `new` (None: not both versions)."""
    a, b = parse_version(old), parse_version(new)
    if a is None or b is None:
        return None
    return a.sort_key <= b.sort_key


class History:
    """Ancestry questions about components' releases; answers from history are cached (a
    tag's commit does not move)."""

    def __init__(self, source: ComponentSource | None) -> None:
        self.source = source
        self._known: dict[tuple[str, str, str], bool] = {}

    async def is_ancestor(self, component: str, old: str, new: str) -> bool | None:
        """Release `old` is in the history of `new` (the same release counts)."""
        if old == new:
            return True
        key = (component, old, new)
        if key in self._known:
            return self._known[key]
        answer: bool | None = None
        if self.source is not None:
            try:
                answer = await self.source.is_ancestor(component, old, new)
            except Exception:  # an unreadable history falls back to the release order
                log.warning("ancestry of %s %s..%s unreadable", component, old, new, exc_info=True)
        if answer is None:
            return by_release_order(old, new)
        if len(self._known) >= _CACHE_LIMIT:
            self._known.clear()
        self._known[key] = answer
        return answer

    async def direction(self, component: str, current: str | None, target: str) -> Direction:
        """Moving from `current` (what runs) to `target`."""
        if not current or current.startswith("mixed"):
            return Direction.UNKNOWN
        if current == target:
            return Direction.SAME
        if await self.is_ancestor(component, target, current):
            return Direction.BACK
        return Direction.FORWARD

    async def contains(self, component: str, running: str | None, version: str) -> bool | None:
        """Does an environment running `running` contain `version` (None: unknown)?"""
        if not running or running.startswith("mixed"):
            return None
        return await self.is_ancestor(component, version, running)
