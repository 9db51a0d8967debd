"""`!prune plan <component>`: which registry artifacts would be safe to delete, and why.

An artifact version is safe when it is not live, pinned or `previous` in any environment,
not among the newest `KEEP_NEWEST` releases, and older than `GRACE_DAYS`. The plan refuses
when what an environment runs, pins or had before cannot be read (it must never list an
artifact in use). Read-only: the bot never deletes anything; the full list with a reason per
artifact goes on a page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.core.versions import Version, parse_version

KEEP_NEWEST = 10
GRACE_DAYS = 30
SHOWN = 3


@dataclass(frozen=True)
class Candidate:
    version: str
    reason: str


@dataclass
class PrunePlan:
    component: str
    safe: list[Candidate] = field(default_factory=list)  # oldest first
    kept: dict[str, list[str]] = field(default_factory=dict)  # why -> versions

    def page(self) -> str:
        lines = [f"prune plan for {self.component} (read-only: nothing was deleted)", ""]
        lines += [f"safe to delete  {c.version}  {c.reason}" for c in self.safe]
        for why, versions in self.kept.items():
            lines += [f"keep            {v}  {why}" for v in versions]
        return "\n".join(lines) + "\n"

    def line(self, link: str | None) -> str:
        total = len(self.safe) + sum(len(v) for v in self.kept.values())
        kept = ", ".join(f"{len(v)} {why}" for why, v in self.kept.items() if v)
        head = (
            f"prune plan for {self.component} (read-only, nothing deleted): {len(self.safe)} of"
            f" {total} artifact versions safe to delete"
        )
        if self.safe:
            shown = ", ".join(c.version for c in self.safe[:SHOWN])
            more = f" and {len(self.safe) - SHOWN} more" if len(self.safe) > SHOWN else ""
            head += f", oldest first: {shown}{more}"
        return (
            head + (f" · kept: {kept}" if kept else "") + (f" · full list: {link}" if link else "")
        )


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
