"""Versions of upstream charts (cert-manager, kyverno): the components configured with
`helm_repo`, whose releases are not tags of a repository of ours.

A classic Helm repository lists every chart version in its `index.yaml`
(`entries.<chart>[].version`); an OCI repository (`helm_repo: oci://host/path`) lists them as
the tags of `<path>/<chart>`. Either way the bot gets plain version names (no commits), cached
for a minute, and one-line `ChartRepoError`s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import yaml

from bot.cluster.registry import Registry, RegistryError
from bot.config.model import Config
from bot.core.errors import UserError
from bot.core.versions import Tag

INDEX_LIMIT = 32 * 1024 * 1024  # the biggest public index.yaml files are a few MB


class ChartRepoError(UserError):
    """A chart repository could not be read; one line, no credentials."""


def index_versions(text: str, chart: str) -> list[str]:
    """The versions of `chart` in a Helm repository's `index.yaml` text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ChartRepoError("index.yaml is not valid YAML") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ChartRepoError("index.yaml has no entries")
    found = entries.get(chart)
    if not isinstance(found, list):
        raise ChartRepoError(f"chart {chart} is not in the repository's index.yaml")
    return [str(e["version"]) for e in found if isinstance(e, dict) and e.get("version")]


class ChartRepos:
    """Chart versions for components with `helm_repo` (a `ComponentSource` by shape)."""

    def __init__(
        self,
        config: Config,
        registry: Registry | None = None,
        *,
        ttl: float = 60.0,
        timeout: float = 20.0,
        registry_for: Callable[[str], Registry] | None = None,
    ) -> None:
        self._config = config
        self._registry = registry  # the configured registry, used when the host is its host
        self._registry_for = registry_for or (lambda url: Registry(url))
        self._ttl = ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache: dict[str, tuple[float, list[Tag]]] = {}
        self._lock = asyncio.Lock()

    def handles(self, component: str) -> bool:
        comp = self._config.components.get(component)
        return comp is not None and bool(comp.helm_repo)

    async def tags(self, component: str) -> list[Tag]:
        hit = self._cache.get(component)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        comp = self._config.components[component]
        repo, chart = (comp.helm_repo or "").rstrip("/"), comp.chart or component
        chart = chart.rsplit("/", 1)[-1]
        async with self._lock:
            if repo.startswith("oci://"):
                names = await self._oci(repo, chart)
            else:
                names = await self._index(repo, chart)
        tags = [Tag(name, "") for name in names]
        self._cache[component] = (time.monotonic(), tags)
        return tags

    async def merged(self, component: str, sha: str) -> None:
        """Upstream charts have no commits of ours."""
        return None

    async def changes(self, component: str, old: str, new: str) -> None:
        """Nor a repository to compare (their changelog is upstream's)."""
        return None

    async def is_ancestor(self, component: str, old: str, new: str) -> None:
        """Nor a history: their order is the semver order of the versions."""
        return None

    async def _index(self, repo: str, chart: str) -> list[str]:
        url = f"{repo}/index.yaml"
        host = urlsplit(repo).hostname or repo
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as http:
                async with http.get(url) as resp:
                    if resp.status != 200:
                        raise ChartRepoError(f"{host}/index.yaml answered HTTP {resp.status}")
                    if (resp.content_length or 0) > INDEX_LIMIT:
                        raise ChartRepoError(f"{host}/index.yaml is larger than 32 MB")
                    text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise ChartRepoError(f"cannot read {host}/index.yaml ({why})") from None
        return await asyncio.to_thread(index_versions, text, chart)

    async def _oci(self, repo: str, chart: str) -> list[str]:
        host, _, path = repo.removeprefix("oci://").partition("/")
        name = f"{path}/{chart}".strip("/")
        own = self._registry
        try:
            if own is not None and urlsplit(own.url).netloc == host:
                found = await own.tags(name)
            else:
                async with self._registry_for(f"https://{host}") as other:
                    found = await other.tags(name)
        except RegistryError as exc:
            raise ChartRepoError(str(exc)) from None
        if not found:
            raise ChartRepoError(f"chart {name} has no tags in {host}")
        return [t.replace("_", "+") for t in found]  # OCI tags spell `+` as `_`
