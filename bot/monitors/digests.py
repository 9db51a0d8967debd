"""Image digests: are the pods running the image the pin names, or only the same tag?

What runs is otherwise read from the chart's version label, so a re-pushed tag (same
version, new digest) or an image overridden in the values is invisible. Here the pods' image
digests (`status.containerStatuses[].imageID`) of the component's image are compared with
the digest the registry gives for the pinned tag now. A mismatch is an `image-digest` alert:
"running a different image than the pin's". Checked only where the chart label already says
the pin runs (otherwise it is drift, said by the drift monitor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from bot.cluster.registry import Registry, RegistryError, oci_tag
from bot.cluster.workloads import PodState
from bot.core.tasks import within
from bot.services import Services
from bot.status.board import Cell, ComponentStatus
from bot.store.alerts import IMAGE_MISMATCH as MISMATCH
from bot.store.alerts import Finding, Scope


@dataclass(frozen=True)
class ImageRef:
    repository: str  # without the registry host
    tag: str | None
    digest: str | None


def parse_image(ref: str) -> ImageRef:
    """`host/toolforge/x:1.0@sha256:..` -> (toolforge/x, 1.0, sha256:..); the host is the
    first segment when it has a dot, a colon or is localhost."""
    name, _, digest = ref.partition("@")
    for scheme in ("docker-pullable://", "docker://"):
        name = name.removeprefix(scheme)
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = rest
    return ImageRef(name, tag, digest or None)


def mismatches(
    pods: Iterable[PodState], repository: str, pinned: list[str], registry_digest: str | None
) -> list[str]:
    """What runs another image of `repository` (no host) than the pin's: `pod p container c
    runs <tag>@<digest>` (a re-pushed tag) or `... runs tag <t>` (an override)."""
    tags = {oci_tag(v) for v in pinned}
    found = []
    for pod in pods:
        if pod.terminating:
            continue
        for c in pod.containers:
            ref = parse_image(c.image)
            if ref.repository != repository:
                continue
            running = parse_image(c.image_id).digest if c.image_id else None
            if ref.tag not in tags:
                found.append(f"pod {pod.name} container {c.name} runs tag {ref.tag}")
            elif running and registry_digest and running != registry_digest:
                found.append(f"pod {pod.name} container {c.name} runs {ref.tag}@{running[:19]}")
    return found


def _finding(cell: Cell, image: str, digest: str | None, found: list[str]) -> Finding:
    """One alert per cell: the first two containers, and what the registry has now."""
    pinned = ",".join(cell.pinned.value or [])
    now = f"; the registry's {image}:{pinned} is {digest[:19]}" if digest else ""
    more = f" (+{len(found) - 2} more)" if len(found) > 2 else ""
    text = f"{MISMATCH}: {'; '.join(found[:2])}{more}{now} (tag re-pushed or image overridden)"
    return Finding("image-digest", cell.component, cell.env, "", text)


async def digest_findings(
    services: Services, statuses: list[ComponentStatus]
) -> tuple[list[Finding], set[Scope]]:
    """`image-digest` findings for every cell whose pods were listed and whose chart label
    says the pin runs; the registry is asked once per image and tag."""
    registry = services.registry
    if registry is None:
        return [], set()
    cfg = services.config
    cells = [
        cell
        for status in statuses
        for cell in status.cells.values()
        if cfg.components[cell.component].image
        and not cfg.components[cell.component].helm_repo
        and cell.health.value is not None
        and cell.health.value.pods is not None
        and cell.pinned.ok
        and len(cell.pinned.value or []) == 1
        and cell.live.value in (cell.pinned.value or [])
    ]
    wanted = sorted({(cfg.components[c.component].image or "", c.live.value or "") for c in cells})
    got = await asyncio.gather(*(_digest(registry, image, tag) for image, tag in wanted))
    digests = dict(zip(wanted, got, strict=True))
    findings: list[Finding] = []
    scopes: set[Scope] = set()
    for cell in cells:
        image = cfg.components[cell.component].image or ""
        ok, digest = digests[(image, cell.live.value or "")]
        if not ok:
            continue  # the registry did not answer: leave the alert as it was
        scopes.add(("image-digest", cell.component, cell.env))
        pods = cell.health.value.pods if cell.health.value else None
        repository = registry.repository_path(image)
        found = mismatches(pods or (), repository, cell.pinned.value or [], digest)
        if found:
            findings.append(_finding(cell, image, digest, found))
    return findings, scopes


async def _digest(registry: Registry, image: str, tag: str) -> tuple[bool, str | None]:
    try:
        return True, await within(registry.manifest_digest(image, tag), 10)
    except (RegistryError, TimeoutError):
        return False, None
