"""Chart versions and the refs people type in chat to name one.

CI versions every build `0.0.<N>-<YYYYMMDDHHMMSS>-<sha8>` (release, tagged on the commit) or
`0.0.<N>-dev-mr-<IID>` (a merge request's dev build). Upstream charts (cert-manager,
kyverno) use semver (`v1.12.0`, `1.13.0-alpha.1`), ordered by semver precedence. Chat users name a version by a ref:
the full version, a commit sha prefix, `latest`, `previous` or `mr<IID>`. This module parses
versions, orders them numerically and resolves refs against the release tags a forge reports.
It does no I/O; callers pass the tags in.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

MAX_REF_LENGTH = 100
MAX_CANDIDATES_SHOWN = 5
_ECHO_LIMIT = 60

_RELEASE_RE = re.compile(r"0\.0\.(0|[1-9][0-9]{0,8})-([0-9]{14})-([0-9a-f]{8})")
_DEV_RE = re.compile(r"0\.0\.(0|[1-9][0-9]{0,8})-dev-mr-([1-9][0-9]{0,8})")
_SEMVER_RE = re.compile(
    r"v?(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_SHORT_RE = re.compile(r"0\.0\.(0|[1-9][0-9]{0,8})")  # a release as chat shows it: `0.0.134`
_SHA_RE = re.compile(r"[0-9a-f]{4,40}")
_MR_RE = re.compile(r"mr([1-9][0-9]{0,8})")
_HEX40_RE = re.compile(r"[0-9a-f]{40}")
_REF_CHARS_RE = re.compile(r"[A-Za-z0-9.-]+")


@dataclass(frozen=True)
class Version:
    """A parsed chart version; `raw` is the exact string as pinned and tagged."""

    raw: str
    n: int
    timestamp: str | None
    sha8: str | None
    mr: int | None
    # semver versions (upstream charts): (major, minor) and the pre-release identifiers
    semver: tuple[int, int] | None = None
    pre: tuple[tuple[int, int, str], ...] = ()

    @property
    def is_release(self) -> bool:
        return self.timestamp is not None or self.semver is not None

    @property
    def is_prerelease(self) -> bool:
        return bool(self.pre)

    @property
    def sort_key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...], str, int]:
        """CI builds: by commit count, then build time (a dev build sorts before releases of
        its N). Semver: major, minor, patch, then a pre-release before its release."""
        major, minor = self.semver or (0, 0)
        final = 1 if (self.timestamp is not None or (self.semver and not self.pre)) else 0
        return (major, minor, self.n, final, self.pre, self.timestamp or "", self.mr or 0)

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True)
class Tag:
    """A git tag as a forge reports it: its name and the full sha of the tagged commit."""

    name: str
    commit: str


class RefError(ValueError):
    """A ref that cannot be used; the message is one line fit for chat."""


@functools.lru_cache(maxsize=8192)
def parse_version(s: str) -> Version | None:
    """Parse a release or dev-build version; None for anything else. Cached: a `!status`
    over 100 components parses the same few tags thousands of times (`Version` is frozen)."""
    m = _RELEASE_RE.fullmatch(s)
    if m is not None:
        stamp = m.group(2)
        try:
            datetime.strptime(stamp, "%Y%m%d%H%M%S")
        except ValueError:
            return None
        return Version(raw=s, n=int(m.group(1)), timestamp=stamp, sha8=m.group(3), mr=None)
    m = _DEV_RE.fullmatch(s)
    if m is not None:
        return Version(raw=s, n=int(m.group(1)), timestamp=None, sha8=None, mr=int(m.group(2)))
    m = None if s.startswith(("0.0.", "v0.0.")) else _SEMVER_RE.fullmatch(s)  # 0.0.x: CI's
    if m is not None:
        pre = tuple(
            (0, int(p), "") if p.isdigit() else (1, 0, p)
            for p in (m.group(4) or "").split(".")
            if p
        )
        major, minor = int(m.group(1)), int(m.group(2))
        return Version(s, int(m.group(3)), None, None, None, semver=(major, minor), pre=pre)
    return None


def _shown(ref: str) -> str:
    """The bad input, safe and short enough to quote back in a chat line."""
    printable = "".join(c if c.isprintable() else "?" for c in ref)
    if len(printable) > _ECHO_LIMIT:
        printable = printable[: _ECHO_LIMIT - 3] + "..."
    return repr(printable)


_EXPECTED = (
    "expected a version (0.0.N, 0.0.N-YYYYMMDDHHMMSS-sha8 or semver v1.2.3), a commit sha (4-40 hex), "
    "'latest', 'previous' or 'mr<IID>'"
)


def check_ref(ref: str) -> None:
    """Refuse anything that is not a well-formed ref, before it goes anywhere near a forge."""
    if not ref:
        raise RefError("empty ref; " + _EXPECTED)
    if len(ref) > MAX_REF_LENGTH:
        raise RefError(f"ref too long ({len(ref)} characters, at most {MAX_REF_LENGTH})")
    if any(not c.isprintable() for c in ref):
        raise RefError(f"ref {_shown(ref)} contains control characters")
    if any(c.isspace() for c in ref):
        raise RefError(f"ref {_shown(ref)} must be a single word")
    if "/" in ref or ".." in ref:
        raise RefError(f"ref {_shown(ref)} must not contain '/' or '..'")
    if _REF_CHARS_RE.fullmatch(ref) is None:
        bad = sorted({c for c in ref if _REF_CHARS_RE.fullmatch(c) is None})
        shown = " ".join(bad[:10])
        raise RefError(f"ref {_shown(ref)} contains characters that are not allowed: {shown}")
    low = ref.lower()
    if (
        low in ("latest", "previous")
        or _SHA_RE.fullmatch(low)
        or _MR_RE.fullmatch(low)
        or _SHORT_RE.fullmatch(low)
        or parse_version(ref) is not None
    ):
        return
    raise RefError(f"unknown ref {_shown(ref)}; " + _EXPECTED)


def release_versions(tags: Iterable[Tag]) -> list[Version]:
    """Release versions named by the tags (other tag names ignored), oldest first, no repeats."""
    seen: dict[str, Version] = {}
    for tag in tags:
        v = parse_version(tag.name)
        if v is not None and v.is_release:
            seen[v.raw] = v
    return sorted(seen.values(), key=lambda v: v.sort_key)


def _candidates(versions: Sequence[Version]) -> str:
    names = [v.raw for v in sorted(versions, key=lambda v: v.sort_key, reverse=True)]
    shown = ", ".join(names[:MAX_CANDIDATES_SHOWN])
    more = len(names) - MAX_CANDIDATES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _tag_matches_sha(tag: Tag, version: Version, prefix: str) -> bool:
    commit = tag.commit.lower()
    if commit.startswith(prefix):
        return True
    sha8 = version.sha8 or ""
    if len(prefix) <= 8:
        return sha8.startswith(prefix)
    # A longer prefix names one commit; the version's sha8 decides only when the tag's
    # commit is not that same sha8 commit (then the commit check above was authoritative).
    return sha8 == prefix[:8] and not (_HEX40_RE.fullmatch(commit) and commit[:8] == sha8)


def _resolve_sha(prefix: str, tags: Sequence[Tag]) -> Version:
    matches: dict[str, tuple[Version, str]] = {}
    for tag in tags:
        v = parse_version(tag.name)
        if v is None or not v.is_release:
            continue
        if _tag_matches_sha(tag, v, prefix):
            matches[v.raw] = (v, tag.commit.lower() or (v.sha8 or ""))
    if not matches:
        raise RefError(f"no release version built from a commit starting with {prefix}")
    versions = [v for v, _ in matches.values()]
    commits = {sha for _, sha in matches.values()}
    if len(commits) > 1:
        raise RefError(
            f"ambiguous commit {prefix}: matches {len(versions)} versions: "
            f"{_candidates(versions)}; give more of the sha or the full version"
        )
    # Several builds of one commit (a re-run pipeline): the newest build is the one meant.
    return max(versions, key=lambda v: v.sort_key)


def resolve_ref(
    ref: str,
    tags: Sequence[Tag],
    *,
    previous: str | None = None,
    mr_versions: Mapping[int, str] | None = None,
) -> Version:
    """Turn a chat ref into a version, or raise RefError with one line naming candidates.

    `previous` is the version live before the current one (for the ref `previous`);
    `mr_versions` maps MR IIDs to their dev-build versions (for `mr<IID>`).
    """
    check_ref(ref)
    low = ref.lower()
    releases = release_versions(tags)
    newest = releases[-1].raw if releases else None

    if low == "latest":
        if newest is None:
            raise RefError("no release versions tagged yet, so 'latest' names nothing")
        stable = [v for v in releases if not v.is_prerelease]  # latest skips pre-releases
        return (stable or releases)[-1]

    if low == "previous":
        if previous is None:
            raise RefError("no previous version known for this component and environment")
        v = parse_version(previous)
        if v is None:
            raise RefError(f"previous version {_shown(previous)} is not a valid version")
        return v

    m = _MR_RE.fullmatch(low)
    if m is not None:
        iid = int(m.group(1))
        raw = (mr_versions or {}).get(iid)
        if raw is None:
            raise RefError(f"no dev build known for MR !{iid}")
        v = parse_version(raw)
        if v is None:
            raise RefError(f"dev build of MR !{iid} has an invalid version {_shown(raw)}")
        return v

    full = parse_version(ref)
    if full is not None:
        if full.is_release:
            if any(r.raw == full.raw for r in releases):
                return full
            hint = f"newest is {newest}" if newest else "no release versions tagged yet"
            raise RefError(f"unknown version {full.raw}; {hint}")
        known = (mr_versions or {}).get(full.mr or 0)
        if known == full.raw:
            return full
        raise RefError(f"unknown dev build {full.raw}; use mr{full.mr} for the MR's current build")

    short = _SHORT_RE.fullmatch(low)
    if short is not None:
        return _resolve_short(int(short.group(1)), releases, newest)
    return _resolve_sha(low, tags)


def _resolve_short(n: int, releases: Sequence[Version], newest: str | None) -> Version:
    """`0.0.N`, as every reply shows a release: the build of that N (several builds of one
    commit, a re-run pipeline: the newest; builds of different commits: ambiguous)."""
    builds = [v for v in releases if v.timestamp is not None and v.n == n]
    if not builds:
        hint = f"newest is {newest}" if newest else "no release versions tagged yet"
        raise RefError(f"no release 0.0.{n}; {hint}")
    if len({v.sha8 for v in builds}) > 1:
        raise RefError(
            f"ambiguous 0.0.{n}: {len(builds)} builds of different commits: "
            f"{_candidates(builds)}; give the full version or the commit sha"
        )
    return max(builds, key=lambda v: v.sort_key)


# a full CI release version standing alone in a line (not part of a longer word, a file name,
# an image or chart reference `…/builds-api:0.0.134-…`, `0.0.134-…@sha256:…` or a path: those
# are copied as they are)
_RELEASE_IN_TEXT = re.compile(
    r"(?<![\w.:/@-])([0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9})-([0-9]{14})-([0-9a-f]{8,40})"
    r"(?![\w@-]|\.\w)"
)


def shorten_releases(text: str, keep: Sequence[tuple[int, int]] = ()) -> str:
    """`text` with every full release version `X.Y.Z-<14 digits>-<sha>` shown as
    `X.Y.Z (<sha8>)`, except inside the `keep` spans (commands to type, URLs), which stay
    exactly as they are so a reader can still type or open them."""

    def inside(at: int, end: int) -> bool:
        return any(a < end and at < b for a, b in keep)

    def short(m: re.Match[str]) -> str:
        if inside(*m.span()):
            return m.group(0)
        return f"{m.group(1)} ({m.group(3)[:8]})"

    return _RELEASE_IN_TEXT.sub(short, text)


def newer_than(tags: Iterable[Tag], version: Version | str) -> list[Version]:
    """Release versions newer than `version`, oldest first (what is merged but not deployed)."""
    base = parse_version(version) if isinstance(version, str) else version
    if base is None:
        raise RefError(f"not a version: {_shown(str(version))}")
    return [v for v in release_versions(tags) if v.sort_key > base.sort_key]
