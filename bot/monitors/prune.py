"""`!prune plan <component>` and `!prune apply <component>`: which registry artifacts are
safe to delete, and deleting exactly those.

An artifact version is safe when it is not live, pinned or `previous` in any environment,
not among the newest `prune.keep` releases (default `KEEP_NEWEST`), and built longer ago than
`prune.grace` (default `GRACE_DAYS` days). The plan refuses when what an environment runs,
pins or had before cannot be read (it must never list an artifact in use); it shows each
version's size (config plus layers of its manifests) and the total, and is remembered.

`apply_prune` deletes only versions of the remembered plan that are still safe when it runs
(a version pinned since is kept, and said so), one registry manifest per tag, by digest; a
digest that a kept tag also points at is never deleted (a registry deletes every tag of a
digest at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.cluster.registry import Registry, oci_tag
from bot.core.text import format_bytes
from bot.core.versions import Version, parse_version

KEEP_NEWEST = 10
GRACE_DAYS = 30
SHOWN = 3


@dataclass(frozen=True)
class Candidate:
    version: str
    reason: str
    size: int | None = None  # bytes in the registry (None: not measured)


@dataclass
class PrunePlan:
    component: str
    safe: list[Candidate] = field(default_factory=list)  # oldest first
    kept: dict[str, list[str]] = field(default_factory=dict)  # why -> versions

    def page(self) -> str:
        lines = [f"prune plan for {self.component} (read-only: nothing was deleted)", ""]
        lines += [f"safe to delete  {c.version}  {_size(c.size)}  {c.reason}" for c in self.safe]
        if self.safe:
            lines += [f"total           {_size(self.total)}"]
        for why, versions in self.kept.items():
            lines += [f"keep            {v}  {why}" for v in versions]
        return "\n".join(lines) + "\n"

    @property
    def measured(self) -> bool:
        return any(c.size is not None for c in self.safe)

    @property
    def total(self) -> int:
        return sum(c.size or 0 for c in self.safe)

    def line(self, link: str | None) -> str:
        total = len(self.safe) + sum(len(v) for v in self.kept.values())
        kept = ", ".join(f"{len(v)} {why}" for why, v in self.kept.items() if v)
        head = (
            f"prune plan for {self.component} (read-only, nothing deleted): {len(self.safe)} of"
            f" {total} artifact versions safe to delete"
            + (f" ({_size(self.total)} in all)" if self.measured else "")
        )
        if self.safe:
            shown = ", ".join(
                c.version + (f" ({_size(c.size)})" if c.size is not None else "")
                for c in self.safe[:SHOWN]
            )
            more = f" and {len(self.safe) - SHOWN} more" if len(self.safe) > SHOWN else ""
            head += f", oldest first: {shown}{more}"
        return (
            head + (f" · kept: {kept}" if kept else "") + (f" · full list: {link}" if link else "")
        )


def _size(n: int | None) -> str:
    return "size unknown" if n is None else format_bytes(n)


def _built(v: Version) -> datetime | None:
    if v.timestamp is None:
        return None
    return datetime.strptime(v.timestamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def plan_prune(
    component: str,
    tags: Iterable[str],
    in_use: Mapping[str, list[str]],
    now: datetime,
    *,
    keep_newest: int = KEEP_NEWEST,
    grace_days: int = GRACE_DAYS,
) -> PrunePlan:
    """Sort the artifact versions `tags` into safe-to-delete (with reasons) and kept."""
    found = {v.raw: v for v in map(parse_version, set(tags)) if v is not None and v.is_release}
    versions = sorted(found.values(), key=lambda v: v.sort_key)
    newest = {v.raw for v in versions[-keep_newest:]} if keep_newest > 0 else set()
    plan = PrunePlan(component)
    newest_key, young_key = f"among the newest {keep_newest}", f"younger than {grace_days} days"
    kept: dict[str, list[str]] = {"in use": [], newest_key: [], young_key: []}
    for i, v in enumerate(versions):
        built = _built(v)
        if v.raw in in_use:
            kept["in use"].append(f"{v.raw} ({', '.join(in_use[v.raw])})")
        elif v.raw in newest:
            kept[newest_key].append(v.raw)
        elif built is None or (now - built).days < grace_days:
            kept[young_key].append(v.raw)
        else:
            newer = len(versions) - i - 1
            plan.safe.append(
                Candidate(
                    v.raw,
                    f"not live, pinned or previous anywhere; {newer} newer releases;"
                    f" built {(now - built).days} days ago",
                )
            )
    plan.kept = kept
    return plan


async def measure(registry: Registry, repos: list[str], plan: PrunePlan) -> None:
    """Fill in each safe version's size: the sum over its repositories (image, chart) of the
    manifest's config and layers (a missing tag counts nothing)."""
    calls = asyncio.Semaphore(8)

    async def one(repo: str, version: str) -> int:
        async with calls:
            found = await registry.manifest_size(repo, version)
        return found[1] if found is not None else 0

    sizes = await asyncio.gather(
        *(asyncio.gather(*(one(r, c.version) for r in repos)) for c in plan.safe)
    )
    plan.safe = [
        Candidate(c.version, c.reason, sum(s)) for c, s in zip(plan.safe, sizes, strict=True)
    ]


@dataclass(frozen=True)
class Deleted:
    repo: str
    tag: str
    version: str
    digest: str
    size: int


@dataclass
class PruneResult:
    deleted: list[Deleted] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (version, why)

    def line(self, component: str, planned: int) -> str:
        versions = list(dict.fromkeys(d.version for d in self.deleted))
        freed = sum(d.size for d in self.deleted)
        text = (
            f"pruned {len(versions)} of {planned} planned artifact versions of {component}"
            f" ({len(self.deleted)} tags, {format_bytes(freed)}"
            " until the registry's garbage collection)"
        )
        if self.kept:
            shown = "; ".join(f"{v}: {why}" for v, why in self.kept[:SHOWN])
            more = f" and {len(self.kept) - SHOWN} more" if len(self.kept) > SHOWN else ""
            text += f" · kept: {shown}{more}"
        return text


async def apply_prune(
    registry: Registry, repos: list[str], planned: Iterable[str], plan_now: PrunePlan,
    in_use: Mapping[str, list[str]],
) -> tuple[list[Deleted], list[tuple[str, str]]]:  # fmt: skip
    """What to delete of `planned`: each version still safe in `plan_now` (made from what runs,
    pins and ran before just now), per repository its tag's digest, unless a tag that stays
    points at the same digest. Returns (to delete, kept with why); deletes nothing."""
    safe_now = {c.version for c in plan_now.safe}
    todo: list[str] = []
    kept: list[tuple[str, str]] = []
    for version in planned:
        if version in in_use:
            kept.append((version, f"now {', '.join(in_use[version])}"))
        elif version not in safe_now:
            kept.append((version, "no longer safe by the prune rules"))
        else:
            todo.append(version)
    out: list[Deleted] = []
    going = {oci_tag(v) for v in todo}
    for repo in repos:
        tags = await registry.tags(repo)
        digests: dict[str, str] = {}
        for tag in tags:
            found = await registry.manifest_digest(repo, tag)
            if found is not None:
                digests[tag] = found
        staying = {d: t for t, d in digests.items() if t not in going}
        for version in todo:
            tag = oci_tag(version)
            digest = digests.get(tag)
            if digest is None:
                continue  # this repository has no such tag (already gone)
            if digest in staying:
                kept.append(
                    (version, f"{repo}:{tag} shares its digest with kept {staying[digest]}")
                )
                continue
            sized = await registry.manifest_size(repo, version)
            out.append(Deleted(repo, tag, version, digest, sized[1] if sized else 0))
    refused = {v for v, _ in kept}
    return [d for d in out if d.version not in refused], kept
