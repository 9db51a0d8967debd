"""Registry protection: keep a Harbor label on exactly the artifacts still in use.

A Harbor retention rule can keep labelled artifacts; the monitors pass the image and chart
tags of every live, pinned and `previous` version and this module adds the label
(`registry.protect_label`) where it is missing and removes it where the version is no longer
in use. It only labels and unlabels; it never deletes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.cluster.registry import Registry, RegistryError, harbor_path, oci_tag
from bot.config.model import Config

_SHOWN = 3


@dataclass
class ProtectReport:
    added: list[str] = field(default_factory=list)  # `repo:tag`
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def line(self, label: str) -> str | None:
        """One announcement for what changed (None: nothing changed, nothing failed)."""
        parts = []
        for verb, items in (("labelled", self.added), ("unlabelled", self.removed)):
            if items:
                shown = ", ".join(items[:_SHOWN])
                more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
                parts.append(f"{verb} {shown}{more}")
        if self.errors:
            parts.append(f"{len(self.errors)} failed ({self.errors[0]})")
        if not parts:
            return None
        return f"registry protection (label {label!r}): " + "; ".join(parts)


def artifact_repos(config: Config, component: str) -> list[str]:
    """The registry repositories of a component: its image and its chart (none for an
    upstream chart, which lives in its own `helm_repo`)."""
    comp = config.components[component]
    if comp.helm_repo:
        return []
    return [repo for repo in (comp.image, comp.chart) if repo]


def wanted_tags(
    config: Config, registry: Registry, in_use: Mapping[str, Iterable[str]]
) -> dict[str, set[str]]:
    """Repository path -> tags to keep, from component -> versions in use."""
    wanted: dict[str, set[str]] = {}
    for component, versions in in_use.items():
        for repo in artifact_repos(config, component):
            tags = wanted.setdefault(registry.repository_path(repo), set())
            tags.update(oci_tag(v) for v in versions)
    return wanted


async def protect(
    registry: Registry, label: str, wanted: Mapping[str, set[str]], prune: Iterable[str]
) -> ProtectReport:
    """Label every wanted tag; in the repositories named in `prune` (those whose in-use
    versions are all known), unlabel the tags no longer wanted."""
    report = ProtectReport()
    prune = set(prune)
    for repo, tags in sorted(wanted.items()):
        try:
            project, repository = harbor_path(repo)
            current = await registry.labelled_artifacts(project, repository, label)
        except RegistryError as exc:
            report.errors.append(str(exc))
            continue
        for tag in sorted(tags - current):
            try:
                await registry.add_label(project, repository, tag, label)
                report.added.append(f"{repo}:{tag}")
            except RegistryError as exc:
                report.errors.append(str(exc))
        if repo not in prune:
            continue
        for tag in sorted(current - tags):
            try:
                await registry.remove_label(project, repository, tag, label)
                report.removed.append(f"{repo}:{tag}")
            except RegistryError as exc:
                report.errors.append(str(exc))
    return report
