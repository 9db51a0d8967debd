"""Rendered manifests compared: which resources would applying one render over another change.

Pure functions over the text `helmfile template` prints (multi-document YAML) and over
helm-diff's headers, so the unapplied check names `Kind/name` the same way from either
source. No values are ever returned, only names: a render may hold secrets.
"""

from __future__ import annotations

from typing import Any

import yaml

from bot.cluster.runner import changed_resources

Key = tuple[str, str, str]  # kind, namespace, name


class RenderError(Exception):
    """A render that cannot be read as manifests; the message is one line."""


def manifests(text: str) -> dict[Key, Any]:
    """(kind, namespace, name) -> the document, for every named resource in `text` (a `List`
    is opened up). Comments and empty documents are skipped."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RenderError(f"the render is not YAML{where}") from None
    found: dict[Key, Any] = {}
    while docs:
        doc = docs.pop(0)
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            docs = doc["items"] + docs
            continue
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not doc.get("kind") or not meta.get("name"):
            continue
        found[(str(doc["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))] = doc
    return found


def label(key: Key) -> str:
    """`Deployment/builds-api` (the namespace is the component's, so left out)."""
    return f"{key[0]}/{key[2]}"


def changed(before: dict[Key, Any], after: dict[Key, Any]) -> tuple[str, ...]:
    """`Kind/name` of every resource added, removed or changed, sorted by kind then name."""
    keys = sorted(
        (k for k in before.keys() | after.keys() if before.get(k) != after.get(k)),
        key=lambda k: (k[0], k[2], k[1]),
    )
    return tuple(dict.fromkeys(label(k) for k in keys))


def diff_resources(output: str) -> tuple[str, ...]:
    """`Kind/name` of what helm-diff reports changed (its `<ns>, <name>, <Kind> (<group>)`
    headers), in its order."""
    found = []
    for item in changed_resources(output):
        _, kind, name = item.split("/", 2)
        found.append(f"{kind.split(' (', 1)[0]}/{name}")
    return tuple(dict.fromkeys(found))


def resources_text(resources: tuple[str, ...], limit: int = 4) -> str:
    """`2 resources: Deployment/a, ConfigMap/b` (the first `limit`, then `and N more`)."""
    n = len(resources)
    text = f"{n} resource{'s' if n != 1 else ''}: " + ", ".join(resources[:limit])
    return text + (f" and {n - limit} more" if n > limit else "")
