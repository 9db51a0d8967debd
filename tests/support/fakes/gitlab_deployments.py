"""GitLab's Deployments and Environments API (v4) for `FakeGitLab`: documented shapes of
`POST/PUT/GET /projects/:id/deployments` and `GET/PUT /projects/:id/environments`.

A deployment created for an environment that does not exist yet creates it, as GitLab does.
Every status a deployment went through is kept in `history` so a test can see running ->
success. Statuses follow GitLab's rules: created, running, success, failed, canceled,
blocked; a finished deployment cannot move again (400).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

STATUSES = ("created", "running", "success", "failed", "canceled", "blocked")
FINAL = ("success", "failed", "canceled")


@dataclass
class FakeDeployment:
    id: int
    iid: int
    project: int
    environment: dict[str, Any]
    ref: str
    sha: str
    tag: bool
    status: str
    created_at: str
    history: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "iid": self.iid, "ref": self.ref, "sha": self.sha, "tag": self.tag,
            "status": self.status, "created_at": self.created_at, "updated_at": self.created_at,
            "user": {"id": 1, "username": "deploybot"}, "environment": dict(self.environment),
            "deployable": None,
        }  # fmt: skip


class FakeDeployments:
    """The state and handlers; `FakeGitLab` routes to them."""

    def __init__(self, tick: Callable[[], str], body: Callable[[web.Request], dict[str, Any]]):
        self.tick, self.body = tick, body
        self.deployments: dict[int, FakeDeployment] = {}
        self.environments: dict[tuple[int, str], dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._env_ids = itertools.count(1)

    def of(self, project: int) -> list[FakeDeployment]:
        return [d for d in self.deployments.values() if d.project == project]

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/deployments", self._list),
            ("POST", "/deployments", self._create),
            ("GET", r"/deployments/(?P<did>\d+)", self._get),
            ("PUT", r"/deployments/(?P<did>\d+)", self._update),
            ("GET", "/environments", self._list_envs),
            ("PUT", r"/environments/(?P<eid>\d+)", self._update_env),
        ]

    def _env(self, project: int, name: str) -> dict[str, Any]:
        key = (project, name)
        if key not in self.environments:
            self.environments[key] = {
                "id": next(self._env_ids), "name": name, "slug": name, "external_url": None,
                "state": "available", "tier": "other",
            }  # fmt: skip
        return self.environments[key]

    async def _create(self, p: Any, r: web.Request, m: dict[str, str]) -> web.Response:
        body = self.body(r)
        missing = [k for k in ("environment", "sha", "ref", "tag") if k not in body]
        if missing:
            return web.json_response({"error": f"{missing[0]} is missing"}, status=400)
        status = body.get("status", "running")
        if status not in STATUSES:
            return web.json_response({"error": "status does not have a valid value"}, status=400)
        env = self._env(p.id, str(body["environment"]))
        iid = len(self.of(p.id)) + 1
        d = FakeDeployment(next(self._ids), iid, p.id, env, str(body["ref"]), str(body["sha"]),
                           bool(body["tag"]), status, self.tick(), [status])  # fmt: skip
        self.deployments[d.id] = d
        return web.json_response(d.to_json(), status=201)

    def _find(self, p: Any, m: dict[str, str]) -> FakeDeployment | None:
        d = self.deployments.get(int(m["did"]))
        return d if d is not None and d.project == p.id else None

    async def _get(self, p: Any, r: web.Request, m: dict[str, str]) -> web.Response:
        d = self._find(p, m)
        if d is None:
            return web.json_response({"message": "404 Not found"}, status=404)
        return web.json_response(d.to_json())

    async def _update(self, p: Any, r: web.Request, m: dict[str, str]) -> web.Response:
        d = self._find(p, m)
        if d is None:
            return web.json_response({"message": "404 Not found"}, status=404)
        body = self.body(r)
        status = body.get("status")
        if status not in STATUSES:
            return web.json_response({"error": "status does not have a valid value"}, status=400)
        if d.status in FINAL and status != d.status:
            return web.json_response({"message": f"Cannot transition status via :{status}"},
                                     status=400)  # fmt: skip
        if status != d.status:
            d.status = status
            d.history.append(status)
        return web.json_response(d.to_json())

    async def _list(self, p: Any, r: web.Request, m: dict[str, str]) -> web.Response:
        return web.json_response([d.to_json() for d in self.of(p.id)])

    async def _list_envs(self, p: Any, r: web.Request, m: dict[str, str]) -> web.Response:
        name = r.query.get("name")
        envs = [e for (pid, n), e in self.environments.items() if pid == p.id
                and (name is None or n == name)]  # fmt: skip
        return web.json_response(envs)

    async def _update_env(self, p: Any, r: web.Request, m: dict[str, str]) -> web.Response:
        env = next((e for (pid, _), e in self.environments.items()
                    if pid == p.id and e["id"] == int(m["eid"])), None)  # fmt: skip
        if env is None:
            return web.json_response({"message": "404 Environment Not Found"}, status=404)
        body = self.body(r)
        if "external_url" in body:
            env["external_url"] = body["external_url"]
        return web.json_response(env)
