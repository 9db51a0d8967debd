"""An OCI registry + Harbor API fake that the bot's aiohttp client talks to over HTTP.

It serves `HEAD/GET /v2/<name>/manifests/<reference>` for a seedable set of tags, optionally
behind the bearer-token flow (401 + `WWW-Authenticate: Bearer realm=...`), and the Harbor v2
label endpoints with in-memory labels. `delete_tag()` plays a retention rule pruning a tag.
Like real Harbor, repository names in `/api/v2.0` paths must be URL-encoded twice.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from aiohttp import web

Auth = Literal["bearer", "basic"]


@dataclass
class Artifact:
    digest: str
    tags: set[str] = field(default_factory=set)
    labels: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # raw path and query, as sent
    authorization: str


class FakeRegistry:
    """`async with FakeRegistry(auth="bearer", users={"bot": "pw"}) as reg:` then `reg.url`."""

    def __init__(self, *, auth: Auth | None = None, users: dict[str, str] | None = None) -> None:
        self.auth = auth
        self.users = users or {}
        self.repos: dict[str, dict[str, Artifact]] = {}  # repo -> digest -> artifact
        self.labels: dict[int, dict[str, Any]] = {}
        self.requests: list[Seen] = []
        self.fail_next = 0  # answer this many next requests with 503
        self._tokens: dict[str, str] = {}  # token -> scope
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeRegistry:
        app = web.Application(middlewares=[self._log])
        app.router.add_route("*", "/v2/{tail:.*}", self._distribution)
        app.router.add_get("/service/token", self._token)
        app.router.add_route("*", "/api/v2.0/{tail:.*}", self._harbor)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- seeding ---------------------------------------------------------------------------

    def push(self, repo: str, tag: str) -> str:
        """Push an artifact tagged `tag` (one digest per repo+tag); returns the digest."""
        digest = "sha256:" + hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()
        self.repos.setdefault(repo, {}).setdefault(digest, Artifact(digest)).tags.add(tag)
        return digest

    def delete_tag(self, repo: str, tag: str) -> None:
        """What a retention rule does: the tag goes, and the artifact with its last tag."""
        artifacts = self.repos.get(repo, {})
        for digest, artifact in list(artifacts.items()):
            artifact.tags.discard(tag)
            if not artifact.tags:
                del artifacts[digest]

    def find(self, repo: str, reference: str) -> Artifact | None:
        for artifact in self.repos.get(repo, {}).values():
            if reference == artifact.digest or reference in artifact.tags:
                return artifact
        return None

    def label_names(self, repo: str, reference: str) -> set[str]:
        artifact = self.find(repo, reference)
        return {self.labels[i]["name"] for i in artifact.labels} if artifact else set()

    # --- HTTP ------------------------------------------------------------------------------

    @web.middleware
    async def _log(self, request: web.Request, handler: Any) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.requests.append(Seen(request.method, request.raw_path, auth))
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        response: web.StreamResponse = await handler(request)
        return response

    def _basic_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.users.get(user) == password

    async def _token(self, request: web.Request) -> web.Response:
        if self.users and not self._basic_ok(request):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        token = secrets.token_hex(8)
        self._tokens[token] = request.query.get("scope", "")
        return web.json_response({"token": token, "expires_in": 300})

    async def _distribution(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if tail == "":
            return web.json_response({})
        if tail.endswith("/tags/list"):
            return self._tag_list(request, tail.removesuffix("/tags/list"))
        name, sep, reference = tail.rpartition("/manifests/")
        if not sep or request.method not in ("GET", "HEAD"):
            return web.json_response({"errors": [{"code": "UNSUPPORTED"}]}, status=405)
        scope = f"repository:{name}:pull"
        denied = self._check_pull(request, scope)
        if denied is not None:
            return denied
        artifact = self.find(name, reference)
        if artifact is None:
            body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
            return web.json_response(body, status=404)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": _OCI_MANIFEST}).encode()
        headers = {"Docker-Content-Digest": artifact.digest, "Content-Type": _OCI_MANIFEST}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(manifest))
            return web.Response(status=200, headers=headers)
        return web.Response(body=manifest, headers=headers)

    def _tag_list(self, request: web.Request, name: str) -> web.Response:
        """`GET /v2/<name>/tags/list`, two tags a page with a `Link` to the next (`?last=`)."""
        denied = self._check_pull(request, f"repository:{name}:pull")
        if denied is not None:
            return denied
        tags = sorted(t for a in self.repos.get(name, {}).values() for t in a.tags)
        if not tags:
            return web.json_response({"errors": [{"code": "NAME_UNKNOWN"}]}, status=404)
        after = request.query.get("last", "")
        page = [t for t in tags if t > after][:2]
        headers = {}
        if page and page[-1] != tags[-1]:
            headers["Link"] = f'</v2/{name}/tags/list?n=2&last={page[-1]}>; rel="next"'
        return web.json_response({"name": name, "tags": page}, headers=headers)

    def _check_pull(self, request: web.Request, scope: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if self.auth == "bearer":
            if self._tokens.get(header.removeprefix("Bearer ")) == scope:
                return None
            challenge = (
                f'Bearer realm="{self.url}/service/token",service="harbor-registry",scope="{scope}"'
            )
        elif self.auth == "basic":
            if self._basic_ok(request):
                return None
            challenge = 'Basic realm="fake-registry"'
        else:
            return None
        body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        return web.json_response(body, status=401, headers={"WWW-Authenticate": challenge})

    async def _harbor(self, request: web.Request) -> web.StreamResponse:
        if self.users and not self._basic_ok(request):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        # Split the raw path: Harbor's router decodes once, then unescapes the repository.
        raw = request.raw_path.split("?", 1)[0].removeprefix("/api/v2.0/")
        parts = [unquote(p) for p in raw.split("/")]
        if parts == ["labels"]:
            return await self._labels(request)
        if len(parts) < 5 or parts[0] != "projects" or parts[2] != "repositories":
            return _error(404, "NOT_FOUND", "no such endpoint")
        if "/" in parts[3] or parts[4] != "artifacts":
            return _error(404, "NOT_FOUND", "repository name must be URL-encoded twice")
        repo = f"{parts[1]}/{unquote(parts[3])}"
        rest = parts[5:]
        if not rest:
            if request.method != "GET":
                return _error(405, "METHOD_NOT_ALLOWED", "")
            if repo not in self.repos:
                return _error(404, "NOT_FOUND", f"repository {repo} not found")
            return self._artifact_list(request, repo)
        artifact = self.find(repo, rest[0])
        if artifact is None:
            return _error(404, "NOT_FOUND", f"artifact {repo}:{rest[0]} not found")
        if rest[1:] == [] and request.method == "GET":
            return web.json_response(self._artifact_json(artifact, request.query))
        if rest[1:] == ["labels"] and request.method == "POST":
            label_id = (await request.json()).get("id")
            if label_id not in self.labels:
                return _error(404, "NOT_FOUND", f"label {label_id} not found")
            if label_id in artifact.labels:
                return _error(409, "CONFLICT", "label already added")
            artifact.labels.add(label_id)
            return web.Response(status=200)
        if len(rest) == 3 and rest[1] == "labels" and request.method == "DELETE":
            label_id = int(rest[2]) if rest[2].isdigit() else -1
            if label_id not in artifact.labels:
                return _error(404, "NOT_FOUND", "label not added to the artifact")
            artifact.labels.discard(label_id)
            return web.Response(status=200)
        return _error(405, "METHOD_NOT_ALLOWED", "")

    async def _labels(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await request.json()
            if any(lb["name"] == body["name"] for lb in self.labels.values()):
                return _error(409, "CONFLICT", "label already exists")
            label_id = max(self.labels, default=0) + 1
            self.labels[label_id] = {
                "id": label_id,
                "name": body["name"],
                "scope": body.get("scope", "g"),
            }
            return web.Response(status=201, headers={"Location": f"/api/v2.0/labels/{label_id}"})
        name = request.query.get("name", "")
        found = [lb for lb in self.labels.values() if name in lb["name"]]  # Harbor: fuzzy
        return web.json_response(found)

    def _artifact_json(self, artifact: Artifact, query: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"digest": artifact.digest, "type": "IMAGE"}
        if query.get("with_tag", "true") == "true":
            body["tags"] = [{"name": t} for t in sorted(artifact.tags)]
        if query.get("with_label") == "true":
            body["labels"] = [self.labels[i] for i in sorted(artifact.labels)]
        return body

    def _artifact_list(self, request: web.Request, repo: str) -> web.Response:
        page, size = int(request.query.get("page", 1)), int(request.query.get("page_size", 10))
        everything = sorted(self.repos[repo].values(), key=lambda a: a.digest)
        chosen = everything[(page - 1) * size : page * size]
        return web.json_response(
            [self._artifact_json(a, request.query) for a in chosen],
            headers={"X-Total-Count": str(len(everything))},
        )


_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": message}]}, status=status)
