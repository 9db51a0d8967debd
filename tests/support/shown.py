"""How chat shows a CI release version (README "What the bot says unasked"): its release
part and short sha, `0.0.134 (43712340)` for `0.0.134-20261107230700-43712340`."""

from __future__ import annotations


def shown(version: str) -> str:
    release, _, sha = version.rsplit("-", 2)
    return f"{release} ({sha})"
