"""The Registry edge: do an image and a chart exist, and (Harbor) keep them from retention.

Existence uses the OCI distribution API (`HEAD /v2/<name>/manifests/<tag>`) with the bearer
token flow registries such as Harbor use; protection labels artifacts through Harbor's v2 API.
Connection errors and 5xx are retried with backoff; failures become one-line `RegistryError`s
that never carry credentials.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_PAGE_SIZE = 100


class RegistryError(Exception):
    """The registry could not answer; the message is one line without credentials."""


def oci_tag(version: str) -> str:
    """OCI tags cannot hold `+`; Helm (and image builds) publish it as `_`."""
    return version.replace("+", "_")


def harbor_path(repository: str) -> tuple[str, str]:
    """`toolforge/builds-api` -> (`toolforge`, `builds-api`); deeper paths keep the rest."""
    project, _, rest = repository.strip("/").partition("/")
    if not rest:
        raise RegistryError(f"repository {repository!r} has no Harbor project part")
    return project, rest


def _segment(value: str, *, twice: bool = False) -> str:
    encoded = quote(value, safe="")
    return quote(encoded, safe="") if twice else encoded


class Registry:
    """One registry. Owns its aiohttp session unless one is given; `close()` when done."""

    def __init__(
        self,
        url: str,
        kind: Literal["oci", "harbor"] = "oci",
        username: str | None = None,
        password: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.kind = kind
        parts = urlsplit(self.url)
        self.host = parts.hostname or ""
        self._netloc = parts.netloc
        self._auth = aiohttp.BasicAuth(username, password or "") if username else None
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = attempts
        self._backoff = backoff
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expiry monotonic)
        self._label_ids: dict[str, int] = {}

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _request(
        self, what: str, method: str, url: URL | str, **kwargs: Any
    ) -> tuple[int, dict[str, str], Any]:
        """One request with retries on connection errors, timeouts and 5xx.

        Returns (status, headers, JSON body or None) for any status below 500.
        """
        last = ""
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                async with self._http().request(method, url, **kwargs) as resp:
                    if resp.status >= 500:
                        last = f"HTTP {resp.status}"
                        continue
                    body = None
                    json_body = resp.content_type == "application/json" or (
                        resp.content_type.endswith("+json")  # manifests: their own types
                    )
                    if json_body and method != "HEAD":
                        body = await resp.json(content_type=None)
                    return resp.status, dict(resp.headers), body
            except (aiohttp.ClientError, TimeoutError) as e:
                last = "timed out" if isinstance(e, TimeoutError) else type(e).__name__
        raise RegistryError(f"{what}: registry {self.host} failed {self._attempts} times ({last})")

    # --- OCI distribution ------------------------------------------------------------------

    def repository_path(self, repository: str) -> str:
        """Accept `toolforge/x`, `<host>/toolforge/x` or `oci://<host>/toolforge/x`."""
        path = repository.removeprefix("oci://")
        return path.removeprefix(f"{self._netloc}/").strip("/")

    async def _bearer_token(self, challenge: str, scope: str) -> str:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        scope = params.get("scope", scope)
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        status, _, body = await self._request(
            "token request", "GET", params.get("realm", ""), params=query, auth=self._auth
        )
        token = (body or {}).get("token") or (body or {}).get("access_token")
        if status != 200 or not token:
            raise RegistryError(f"registry {self.host} refused a token for {scope} (HTTP {status})")
        expires = float((body or {}).get("expires_in", 60))
        self._tokens[scope] = (token, time.monotonic() + max(expires - 10, 1))
        return str(token)

    async def _pull(
        self, what: str, method: str, url: URL, repo: str, headers: dict[str, str],
        action: str = "pull",
    ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
        """A request scoped to `action` on repo (pull, or delete); follows a Bearer/Basic 401
        challenge once."""
        scope = f"repository:{repo}:{action}"
        cached = self._tokens.get(scope)
        if cached and cached[1] > time.monotonic():
            headers["Authorization"] = f"Bearer {cached[0]}"
        status, resp_headers, body = await self._request(what, method, url, headers=headers)
        if status == 401:
            challenge = resp_headers.get("WWW-Authenticate", "")
            if challenge.lower().startswith("bearer"):
                token = await self._bearer_token(challenge, scope)
                headers["Authorization"] = f"Bearer {token}"
                status, resp_headers, body = await self._request(what, method, url, headers=headers)
            elif challenge.lower().startswith("basic") and self._auth:
                headers.pop("Authorization", None)
                status, resp_headers, body = await self._request(
                    what, method, url, headers=headers, auth=self._auth
                )
        return status, resp_headers, body

    async def tags(self, repository: str, limit: int = 20) -> list[str]:
        """Every tag of a repository (`GET /v2/<name>/tags/list`, following `Link` pages, at
        most `limit` pages); empty when the repository does not exist."""
        repo = self.repository_path(repository)
        url = URL(f"{self.url}/v2/{quote(repo)}/tags/list", encoded=True)
        found: list[str] = []
        for _ in range(limit):
            what = f"tag list of {repo}"
            status, headers, body = await self._pull(what, "GET", url, repo, {})
            if status == 404:
                return found
            if status != 200 or not isinstance(body, dict):
                raise RegistryError(f"{what}: registry {self.host} answered HTTP {status}")
            found += [str(t) for t in body.get("tags") or []]
            nxt = re.match(r"<([^>]+)>", headers.get("Link", ""))
            if nxt is None:
                break
            url = URL(self.url).join(URL(nxt.group(1)))
        return found

    async def manifest_exists(self, repository: str, tag: str) -> bool:
        """HEAD the manifest; 404 means missing. Follows a Bearer/Basic 401 challenge once."""
        repo = self.repository_path(repository)
        url = URL(f"{self.url}/v2/{quote(repo)}/manifests/{_segment(oci_tag(tag))}", encoded=True)
        what = f"manifest {repo}:{tag}"
        status, _, _ = await self._pull(what, "HEAD", url, repo, {"Accept": MANIFEST_TYPES})
        if status == 200:
            return True
        if status == 404:
            return False
        raise RegistryError(f"{what}: registry {self.host} answered HTTP {status}")

    async def manifest_digest(self, repository: str, tag: str) -> str | None:
        """The digest the tag points at now (`Docker-Content-Digest` of a HEAD); None: no
        such tag."""
        repo = self.repository_path(repository)
        url = URL(f"{self.url}/v2/{quote(repo)}/manifests/{_segment(oci_tag(tag))}", encoded=True)
        what = f"manifest {repo}:{tag}"
        status, headers, _ = await self._pull(what, "HEAD", url, repo, {"Accept": MANIFEST_TYPES})
        if status == 404:
            return None
        digest = headers.get("Docker-Content-Digest", "")
        if status != 200 or not digest.startswith("sha256:"):
            raise RegistryError(f"{what}: registry {self.host} answered HTTP {status}, no digest")
        return digest

    async def manifest_size(self, repository: str, tag: str) -> tuple[str, int] | None:
        """(digest, bytes) of the tag: its config plus its layers (an index: the sizes its
        manifests declare); None: no such tag."""
        repo = self.repository_path(repository)
        url = URL(f"{self.url}/v2/{quote(repo)}/manifests/{_segment(oci_tag(tag))}", encoded=True)
        what = f"manifest {repo}:{tag}"
        status, headers, body = await self._pull(what, "GET", url, repo, {"Accept": MANIFEST_TYPES})
        if status == 404:
            return None
        digest = headers.get("Docker-Content-Digest", "")
        if status != 200 or not isinstance(body, dict) or not digest.startswith("sha256:"):
            raise RegistryError(f"{what}: registry {self.host} answered HTTP {status}")
        parts = [body.get("config") or {}, *(body.get("layers") or [])]
        parts += body.get("manifests") or []
        return digest, sum(int(p.get("size") or 0) for p in parts if isinstance(p, dict))

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete the manifest `digest` (every tag pointing at it goes with it); False: it
        was already gone. Registries delete only by digest, and only with deletes enabled."""
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise RegistryError(f"not a manifest digest: {digest[:80]!r}")
        repo = self.repository_path(repository)
        url = URL(f"{self.url}/v2/{quote(repo)}/manifests/{digest}", encoded=True)
        what = f"delete {repo}@{digest[:19]}"
        status, _, _ = await self._pull(what, "DELETE", url, repo, {}, action="delete")
        if status in (200, 202):
            return True
        if status == 404:
            return False
        if status == 405:
            raise RegistryError(f"{what}: registry {self.host} has deletes disabled (HTTP 405)")
        raise RegistryError(f"{what}: registry {self.host} answered HTTP {status}")

    async def artifacts_exist(self, image_repo: str, chart_repo: str, version: str) -> list[str]:
        """Descriptions of what is missing, e.g. `chart toolforge/builds-api:0.0.131`."""
        checks = [("image", image_repo), ("chart", chart_repo)]
        found = await asyncio.gather(*(self.manifest_exists(r, version) for _, r in checks))
        return [
            f"{kind} {self.repository_path(repo)}:{version}"
            for (kind, repo), present in zip(checks, found, strict=True)
            if not present
        ]

    # --- Harbor labels ---------------------------------------------------------------------

    def _api(self, *segments: str, query: str = "") -> URL:
        return URL(f"{self.url}/api/v2.0/" + "/".join(segments) + query, encoded=True)

    def _artifact(self, project: str, repository: str, *rest: str) -> list[str]:
        return [
            "projects",
            _segment(project),
            "repositories",
            _segment(repository, twice=True),
            "artifacts",
            *rest,
        ]

    async def _harbor(self, what: str, method: str, url: URL, **kwargs: Any) -> tuple[int, Any]:
        if self.kind != "harbor":
            raise RegistryError(f"{what}: registry {self.host} is not a Harbor")
        status, headers, body = await self._request(what, method, url, auth=self._auth, **kwargs)
        if status in (401, 403):
            raise RegistryError(f"{what}: Harbor {self.host} denied access (HTTP {status})")
        return status, (headers, body)

    async def label_id(self, name: str) -> int:
        """The id of the global label `name`, creating it if missing."""
        if name in self._label_ids:
            return self._label_ids[name]
        what = f"label {name}"
        query = f"?scope=g&name={quote(name, safe='')}&page_size={_PAGE_SIZE}"
        status, (_, body) = await self._harbor(what, "GET", self._api("labels", query=query))
        match = [lb["id"] for lb in body or [] if lb.get("name") == name]
        if not match and status == 200:
            label = {
                "name": name,
                "scope": "g",
                "color": "#2E7D32",
                "description": "kept by deploybot",
            }
            status, (headers, _) = await self._harbor(what, "POST", self._api("labels"), json=label)
            if status == 201 and headers.get("Location", "").rsplit("/", 1)[-1].isdigit():
                match = [int(headers["Location"].rsplit("/", 1)[-1])]
            elif status in (201, 409):  # created without Location, or raced: look it up again
                _, (_, body) = await self._harbor(what, "GET", self._api("labels", query=query))
                match = [lb["id"] for lb in body or [] if lb.get("name") == name]
        if not match:
            raise RegistryError(f"{what}: Harbor {self.host} has no such label (HTTP {status})")
        self._label_ids[name] = int(match[0])
        return self._label_ids[name]

    async def artifact_labels(self, project: str, repository: str, reference: str) -> set[str]:
        what = f"labels of {project}/{repository}:{reference}"
        url = self._api(
            *self._artifact(project, repository, _segment(reference)), query="?with_label=true"
        )
        status, (_, body) = await self._harbor(what, "GET", url)
        if status != 200:
            raise RegistryError(f"{what}: Harbor {self.host} answered HTTP {status}")
        return {lb["name"] for lb in (body or {}).get("labels") or []}

    async def add_label(
        self, project: str, repository: str, reference: str, label_name: str
    ) -> None:
        """Attach the label (idempotent: already attached is fine)."""
        label = await self.label_id(label_name)
        what = f"add label {label_name} to {project}/{repository}:{reference}"
        url = self._api(*self._artifact(project, repository, _segment(reference), "labels"))
        status, _ = await self._harbor(what, "POST", url, json={"id": label})
        if status not in (200, 201, 409):
            raise RegistryError(f"{what}: Harbor {self.host} answered HTTP {status}")

    async def remove_label(
        self, project: str, repository: str, reference: str, label_name: str
    ) -> None:
        """Detach the label (idempotent: not attached is fine)."""
        label = await self.label_id(label_name)
        what = f"remove label {label_name} from {project}/{repository}:{reference}"
        url = self._api(
            *self._artifact(project, repository, _segment(reference), "labels", str(label))
        )
        status, _ = await self._harbor(what, "DELETE", url)
        if status not in (200, 404):
            raise RegistryError(f"{what}: Harbor {self.host} answered HTTP {status}")

    async def labelled_artifacts(self, project: str, repository: str, label_name: str) -> set[str]:
        """Tags of the artifacts in the repository that carry the label."""
        what = f"artifacts of {project}/{repository}"
        tags: set[str] = set()
        for page in range(1, 1000):
            query = f"?with_label=true&with_tag=true&page={page}&page_size={_PAGE_SIZE}"
            status, (_, body) = await self._harbor(
                what, "GET", self._api(*self._artifact(project, repository), query=query)
            )
            if status == 404:
                return tags  # no such repository: nothing carries the label
            if status != 200:
                raise RegistryError(f"{what}: Harbor {self.host} answered HTTP {status}")
            for artifact in body or []:
                if any(lb.get("name") == label_name for lb in artifact.get("labels") or []):
                    tags.update(t["name"] for t in artifact.get("tags") or [])
            if len(body or []) < _PAGE_SIZE:
                break
        return tags
