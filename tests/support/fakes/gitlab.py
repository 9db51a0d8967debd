"""An in-memory GitLab v4 API served over HTTP on loopback, for tests that drive the real
python-gitlab client (no GitLab server installs here).

State is seeded through plain methods (`add_project`, `add_commit`, `add_tag`, ...) and read
back the same way; every request is recorded in `requests`, `fail_next` queues faults
(429 with Retry-After, 502, ...), and `hold` keeps one request waiting for the test's go
(after applying it, or without ever applying it), so a client can be killed in that window. Shapes follow GitLab's REST API docs. Simplification: a
merge takes the source branch's tree as is (no three-way merge, no conflicts).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from tests.support.fakes.gitlab_deployments import FakeDeployments

HOST = "https://gitlab.example.org"
_JSON = web.RequestKey("json", dict)
Handler = Callable[["_Project", web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


class _ApiError(Exception):
    def __init__(self, status: int, message: Any, key: str = "message") -> None:
        super().__init__(message)
        self.status, self.body = status, {key: message}


EPOCH = datetime(2024, 2, 22, 21, 0, 0, tzinfo=UTC)


@dataclass
class Commit:
    id: str
    message: str
    parent_ids: list[str]
    tree: dict[str, str]
    created_at: str

    def to_json(self, project: _Project) -> dict[str, Any]:
        return {
            "id": self.id,
            "short_id": self.id[:8],
            "title": self.message.split("\n", 1)[0],
            "message": self.message,
            "author_name": "Deploy Bot",
            "author_email": "deploybot@example.org",
            "authored_date": self.created_at,
            "committer_name": "Deploy Bot",
            "committer_email": "deploybot@example.org",
            "committed_date": self.created_at,
            "created_at": self.created_at,
            "parent_ids": self.parent_ids,
            "web_url": f"{project.web_url}/-/commit/{self.id}",
        }


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any


@dataclass
class _Fault:
    method: str
    prefix: str
    status: int
    headers: dict[str, str]
    times: int


@dataclass
class Hold:
    """One request held by `FakeGitLab.hold`: `reached` is set when it arrived (and, with
    `apply`, was applied); it is answered after `release()`."""

    method: str
    prefix: str
    apply: bool
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.go.set()


@dataclass
class _Project:
    id: int
    path: str
    default_branch: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    mrs: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pipelines: dict[int, dict[str, Any]] = field(default_factory=dict)
    traces: dict[int, str] = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return f"{HOST}/{self.path}"

    def resolve(self, ref: str) -> Commit | None:
        """A branch, tag, or (unique prefix of a) commit id -> that commit."""
        sha = self.branches.get(ref) or (self.tags[ref]["target"] if ref in self.tags else None)
        if sha is None and len(ref) >= 7:
            hits = [c for c in self.commits if c.startswith(ref)]
            sha = hits[0] if len(hits) == 1 else None
        return None if sha is None else self.commits.get(sha)

    def ancestors(self, sha: str | None) -> list[str]:
        seen: list[str] = []
        todo = [sha] if sha else []
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.append(current)
                todo.extend(self.commits[current].parent_ids)
        return seen


class FakeGitLab:
    """`async with FakeGitLab(token="t") as gl:` then point python-gitlab at `gl.url`."""

    def __init__(self, token: str = "fake-token", username: str = "deploybot") -> None:
        self.token, self.username = token, username
        self.requests: list[RecordedRequest] = []
        self._projects: dict[int, _Project] = {}
        self._faults: list[_Fault] = []
        self._holds: list[Hold] = []
        self._ids = itertools.count(101)
        self._clock = itertools.count()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.delay = 0.0  # seconds every API request waits before it is answered (a slow GitLab)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (m, re.compile(rf"^/projects/(?P<project>[^/]+){p}$"), h)
            for m, p, h in [
                ("GET", "", self._get_project),
                ("GET", "/repository/tags", self._list_tags),
                ("GET", "/repository/branches/(?P<name>[^/]+)", self._get_branch),
                ("DELETE", "/repository/branches/(?P<name>[^/]+)", self._delete_branch),
                ("GET", "/repository/files/(?P<file>[^/]+)/raw", self._raw_file),
                ("GET", "/repository/compare", self._compare),
                ("GET", "/repository/commits", self._list_commits),
                ("POST", "/repository/commits", self._create_commit),
                ("GET", "/repository/commits/(?P<sha>[^/]+)", self._get_commit),
                ("GET", "/repository/commits/(?P<sha>[^/]+)/merge_requests", self._commit_mrs),
                ("GET", "/merge_requests", self._list_mrs),
                ("POST", "/merge_requests", self._create_mr),
                ("GET", r"/merge_requests/(?P<iid>\d+)", self._get_mr),
                ("PUT", r"/merge_requests/(?P<iid>\d+)", self._update_mr),
                ("PUT", r"/merge_requests/(?P<iid>\d+)/merge", self._merge_mr),
                ("GET", r"/merge_requests/(?P<iid>\d+)/notes", self._list_notes),
                ("POST", r"/merge_requests/(?P<iid>\d+)/notes", self._create_note),
                ("GET", r"/merge_requests/(?P<iid>\d+)/approvals", self._approvals),
                ("GET", "/pipelines", self._list_pipelines),
                ("GET", r"/pipelines/(?P<pid>\d+)", self._get_pipeline),
                ("GET", r"/jobs/(?P<job>\d+)/trace", self._job_trace),
            ]
        ]
        self.deployments = FakeDeployments(self._tick, lambda r: r[_JSON])
        self._routes += [
            (m, re.compile(rf"^/projects/(?P<project>[^/]+){p}$"), h)
            for m, p, h in self.deployments.routes()
        ]

    # lifecycle

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/v4/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        for hold in self._holds:
            hold.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitLab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # seeding and inspection

    def add_project(
        self, path: str, files: dict[str, str] | None = None, default_branch: str = "main"
    ) -> int:
        project = _Project(next(self._ids), path, default_branch)
        self._projects[project.id] = project
        self.add_commit(project.id, default_branch, files or {"README.md": "hi\n"}, "Initial")
        return project.id

    def add_commit(
        self,
        project: int | str,
        branch: str,
        changes: Mapping[str, str | None],
        message: str,
        sha: str | None = None,
    ) -> str:
        """Commit on `branch` (created from the default branch if new); None deletes a file."""
        p = self._project(project)
        parent = p.branches.get(branch) or p.branches.get(p.default_branch)
        tree = dict(p.commits[parent].tree) if parent else {}
        for path, text in changes.items():
            if text is None:
                tree.pop(path, None)
            else:
                tree[path] = text
        return self._store_commit(p, branch, tree, message, [parent] if parent else [], sha)

    def add_tag(self, project: int | str, name: str, ref: str, message: str = "") -> None:
        p = self._project(project)
        commit = p.resolve(ref)
        assert commit is not None, f"unknown ref {ref}"
        p.tags[name] = {
            "name": name,
            "message": message,
            "target": commit.id,
            "release": None,
            "protected": False,
            "created_at": commit.created_at,
        }

    def add_merge_request(
        self, project: int | str, source: str, target: str, title: str, **extra: Any
    ) -> dict[str, Any]:
        """An MR as if opened by a person; `extra` overrides fields (state, merge_commit_sha...)."""
        mr = self._new_mr(self._project(project), source, target, title, "")
        mr.update(extra)
        return mr

    def approve(self, project: int | str, iid: int, username: str) -> None:
        """`username` approves MR `iid` (GitLab's approvals API then reports it)."""
        mr = self._project(project).mrs[iid]
        mr.setdefault("approved_by", []).append({"user": {"username": username, "id": 7}})

    def add_pipeline(
        self, project: int | str, sha: str, ref: str, status: str = "success", source: str = "push"
    ) -> dict[str, Any]:
        p = self._project(project)
        pid = next(self._ids) + 700000
        p.pipelines[pid] = {
            "id": pid, "iid": len(p.pipelines) + 1, "project_id": p.id, "sha": sha, "ref": ref,
            "status": status, "source": source, "created_at": self._tick(), "updated_at": self._tick(),
            "web_url": f"{p.web_url}/-/pipelines/{pid}", "before_sha": "0" * 40,
            "tag": ref in p.tags, "user": self._user(), "duration": None,
        }  # fmt: skip
        return p.pipelines[pid]

    def set_job_trace(self, project: int | str, job_id: int, text: str) -> None:
        self._project(project).traces[job_id] = text

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        status: int,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` requests matching method and /api/v4-relative prefix get `status`."""
        self._faults.append(_Fault(method.upper(), path_prefix, status, headers or {}, times))

    def hold(self, method: str, path_prefix: str, *, apply: bool) -> Hold:
        """Hold the next request matching method and /api/v4-relative prefix until
        `release()`: applied first and then answered (`apply`), or never applied and
        answered 503 (as if it had never reached GitLab)."""
        held = Hold(method.upper(), path_prefix, apply)
        self._holds.append(held)
        return held

    def clear_faults(self) -> None:
        """GitLab is well again: the queued faults are dropped."""
        self._faults.clear()

    def file(self, project: int | str, ref: str, path: str) -> str | None:
        commit = self._project(project).resolve(ref)
        return None if commit is None else commit.tree.get(path)

    def branch_head(self, project: int | str, branch: str) -> str | None:
        return self._project(project).branches.get(branch)

    def merge_requests(self, project: int | str) -> list[dict[str, Any]]:
        return list(self._project(project).mrs.values())

    def notes(self, project: int | str, iid: int) -> list[dict[str, Any]]:
        return list(self._project(project).notes.get(iid, []))

    # internals

    def _project(self, ref: int | str) -> _Project:
        for p in self._projects.values():
            if str(p.id) == str(ref) or p.path == ref:
                return p
        raise _ApiError(404, "404 Project Not Found")

    def _tick(self) -> str:
        """Timestamps advance one second per use, so "newest first" orders are deterministic."""
        moment = EPOCH + timedelta(seconds=next(self._clock))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _user(self) -> dict[str, Any]:
        return {"id": 1, "username": self.username, "name": self.username, "state": "active"}

    def _store_commit(
        self,
        p: _Project,
        branch: str,
        tree: dict[str, str],
        message: str,
        parents: list[str],
        sha: str | None = None,
    ) -> str:
        seed = f"{p.id}:{message}:{next(self._ids)}".encode()
        sha = sha or hashlib.sha1(seed, usedforsecurity=False).hexdigest()
        p.commits[sha] = Commit(sha, message, parents, tree, self._tick())
        p.branches[branch] = sha
        return sha

    def _new_mr(
        self, p: _Project, source: str, target: str, title: str, description: str
    ) -> dict[str, Any]:
        iid = max(p.mrs, default=0) + 1
        p.mrs[iid] = {
            "id": next(self._ids), "iid": iid, "project_id": p.id, "title": title,
            "description": description, "state": "opened", "created_at": self._tick(),
            "updated_at": self._tick(), "merged_at": None, "closed_at": None,
            "source_branch": source, "target_branch": target, "source_project_id": p.id,
            "target_project_id": p.id, "author": self._user(), "draft": False,
            "work_in_progress": False, "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable", "sha": p.branches.get(source),
            "merge_commit_sha": None, "squash_commit_sha": None, "user_notes_count": 0,
            "labels": [], "web_url": f"{p.web_url}/-/merge_requests/{iid}",
            "references": {"short": f"!{iid}", "full": f"{p.path}!{iid}"}, "commits": None,
        }  # fmt: skip
        return p.mrs[iid]

    def _mr_json(self, p: _Project, mr: dict[str, Any]) -> dict[str, Any]:
        if mr["state"] == "opened":
            mr["sha"] = p.branches.get(mr["source_branch"], mr["sha"])
        return {k: v for k, v in mr.items() if k != "commits"}

    def _mr_commits(self, p: _Project, mr: dict[str, Any]) -> list[str]:
        if mr["commits"] is not None:
            return list(mr["commits"])
        merged = set(p.ancestors(p.branches.get(mr["target_branch"])))
        return [c for c in p.ancestors(mr["sha"]) if c not in merged]

    def _mr(self, p: _Project, m: dict[str, str]) -> dict[str, Any]:
        mr = p.mrs.get(int(m["iid"]))
        if mr is None:
            raise _ApiError(404, "404 Not found")
        return mr

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0].removeprefix("/api/v4")
        if self.delay:
            await asyncio.sleep(self.delay)  # the slow GitLab being simulated, not a wait
        raw = await request.text()
        body = json.loads(raw) if raw and request.content_type == "application/json" else None
        query = {k: v for k, v in parse_qsl(request.query_string)}
        self.requests.append(RecordedRequest(request.method, unquote(path), query, body))
        for fault in self._faults:
            if fault.method == request.method and unquote(path).startswith(fault.prefix):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return web.json_response(
                    {"message": f"{fault.status} injected"},
                    status=fault.status,
                    headers=fault.headers,
                )
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        held = next((h for h in self._holds if h.method == request.method
                     and unquote(path).startswith(h.prefix)), None)  # fmt: skip
        if held is None:
            return await self._handle(request, path, body)
        self._holds.remove(held)
        if not held.apply:
            held.reached.set()
            await held.go.wait()
            return web.json_response({"message": "503 held, never applied"}, status=503)
        response = await self._handle(request, path, body)
        held.reached.set()
        await held.go.wait()
        return response

    async def _handle(self, request: web.Request, path: str, body: Any) -> web.StreamResponse:
        try:
            for method, pattern, handler in self._routes:
                match = pattern.match(path)
                if match and method == request.method:
                    groups = {k: unquote(v) for k, v in match.groupdict().items()}
                    request[_JSON] = body if isinstance(body, dict) else {}
                    return await handler(self._project(groups.pop("project")), request, groups)
            raise _ApiError(404, "404 Not Found", key="error")
        except _ApiError as err:
            return web.json_response(err.body, status=err.status)

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        per_page = min(max(int(request.query.get("per_page", "20")), 1), 100)
        page = max(int(request.query.get("page", "1")), 1)
        pages = max(math.ceil(len(items) / per_page), 1)
        headers = {"X-Total": str(len(items)), "X-Total-Pages": str(pages),
                   "X-Per-Page": str(per_page), "X-Page": str(page),
                   "X-Next-Page": str(page + 1) if page < pages else "",
                   "X-Prev-Page": str(page - 1) if page > 1 else ""}  # fmt: skip
        links = {"first": 1, "last": pages}
        if page < pages:
            links["next"] = page + 1
        if page > 1:
            links["prev"] = page - 1
        headers["Link"] = ", ".join(
            f'<{request.url.update_query(page=n, per_page=per_page)}>; rel="{rel}"'
            for rel, n in links.items()
        )
        chunk = items[(page - 1) * per_page : page * per_page]
        return web.json_response(chunk, headers=headers)

    # handlers

    async def _get_project(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        return web.json_response({
            "id": p.id, "path_with_namespace": p.path, "name": p.path.rsplit("/", 1)[-1],
            "path": p.path.rsplit("/", 1)[-1], "default_branch": p.default_branch,
            "web_url": p.web_url, "http_url_to_repo": f"{p.web_url}.git",
        })  # fmt: skip

    async def _list_tags(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        tags = [dict(t, commit=p.commits[t["target"]].to_json(p)) for t in p.tags.values()]
        if r.query.get("order_by") == "name":
            tags.sort(key=lambda t: t["name"])
        else:
            tags.sort(key=lambda t: (t["commit"]["committed_date"], t["name"]))
        if r.query.get("sort", "desc") == "desc":
            tags.reverse()
        return self._page(r, tags)

    def _branch_json(self, p: _Project, name: str) -> dict[str, Any]:
        return {
            "name": name, "merged": False, "protected": name == p.default_branch,
            "default": name == p.default_branch, "developers_can_push": False,
            "developers_can_merge": False, "can_push": True,
            "web_url": f"{p.web_url}/-/tree/{name}",
            "commit": p.commits[p.branches[name]].to_json(p),
        }  # fmt: skip

    async def _get_branch(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        if m["name"] not in p.branches:
            raise _ApiError(404, "404 Branch Not Found")
        return web.json_response(self._branch_json(p, m["name"]))

    async def _delete_branch(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        if m["name"] not in p.branches:
            raise _ApiError(404, "404 Branch Not Found")
        del p.branches[m["name"]]
        return web.Response(status=204)

    async def _raw_file(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        commit = p.resolve(r.query.get("ref", p.default_branch))
        if commit is None or m["file"] not in commit.tree:
            raise _ApiError(404, "404 File Not Found")
        return web.Response(text=commit.tree[m["file"]], content_type="text/plain")

    async def _create_commit(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        data = r[_JSON]
        for key in ("branch", "commit_message", "actions"):
            if not data.get(key):
                raise _ApiError(400, f"{key} is missing", key="error")
        branch, start = data["branch"], data.get("start_branch") or data["branch"]
        if branch in p.branches and start != branch and not data.get("force"):
            raise _ApiError(400, f"A branch called '{branch}' already exists. "
                                 "Switch to that branch in order to make changes")  # fmt: skip
        if start not in p.branches:
            raise _ApiError(400, "You can only create or edit files when you are on a branch")
        base = p.commits[p.branches[start]]
        tree = dict(base.tree)
        for action in data["actions"]:
            self._apply_action(tree, action)
        sha = self._store_commit(p, branch, tree, data["commit_message"], [base.id])
        return web.json_response(dict(p.commits[sha].to_json(p), project_id=p.id,
                                      status=None, last_pipeline=None), status=201)  # fmt: skip

    @staticmethod
    def _apply_action(tree: dict[str, str], action: dict[str, Any]) -> None:
        kind, path = action.get("action"), action.get("file_path")
        if kind not in ("create", "update", "delete", "move", "chmod") or not path:
            raise _ApiError(400, "actions[action] does not have a valid value", key="error")
        content = action.get("content")
        if content is not None and action.get("encoding") == "base64":
            content = base64.b64decode(content).decode()
        source = action.get("previous_path") if kind == "move" else path
        if kind == "create" and path in tree:
            raise _ApiError(400, "A file with this name already exists")
        if kind != "create" and source not in tree:
            raise _ApiError(400, "A file with this name doesn't exist")
        if kind == "move":
            old = tree.pop(str(source))
            tree[path] = old if content is None else content
        elif kind == "delete":
            del tree[path]
        elif kind != "chmod":
            tree[path] = content or ""

    async def _list_commits(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        """Commits reachable from `ref_name` (default branch), newest first; with `path`,
        only those whose content of that path differs from every parent's."""
        head = p.resolve(r.query.get("ref_name") or p.default_branch)
        if head is None:
            raise _ApiError(404, "404 Not Found")
        found = [p.commits[sha] for sha in p.ancestors(head.id)]
        path = r.query.get("path")
        if path:
            found = [c for c in found if self._touches(p, c, path)]
        found.sort(key=lambda c: c.created_at, reverse=True)
        return self._page(r, [c.to_json(p) for c in found])

    @staticmethod
    def _touches(p: _Project, commit: Commit, path: str) -> bool:
        text = commit.tree.get(path)
        if not commit.parent_ids:
            return text is not None
        return all(p.commits[parent].tree.get(path) != text for parent in commit.parent_ids)

    async def _get_commit(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        commit = p.resolve(m["sha"])
        if commit is None:
            raise _ApiError(404, "404 Commit Not Found")
        return web.json_response(commit.to_json(p))

    async def _commit_mrs(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        commit = p.resolve(m["sha"])
        if commit is None:
            raise _ApiError(404, "404 Commit Not Found")
        found = [self._mr_json(p, mr) for mr in p.mrs.values()
                 if commit.id in self._mr_commits(p, mr) or mr["merge_commit_sha"] == commit.id]  # fmt: skip
        return self._page(r, found)

    async def _list_mrs(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        mrs = [self._mr_json(p, mr) for mr in reversed(p.mrs.values())]
        for key in ("state", "source_branch", "target_branch"):
            wanted = r.query.get(key)
            if wanted and wanted != "all":
                mrs = [mr for mr in mrs if mr[key] == wanted]
        return self._page(r, mrs)

    async def _create_mr(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        data = r[_JSON]
        for key in ("source_branch", "target_branch", "title"):
            if not data.get(key):
                raise _ApiError(400, f"{key} is missing", key="error")
        source, target = data["source_branch"], data["target_branch"]
        for branch in (source, target):
            if branch not in p.branches:
                raise _ApiError(400, [f"Branch '{branch}' does not exist"])
        for mr in p.mrs.values():
            if (mr["source_branch"], mr["target_branch"], mr["state"]) == (
                source,
                target,
                "opened",
            ):
                raise _ApiError(409, ["Another open merge request already exists for this "
                                      f"source branch: !{mr['iid']}"])  # fmt: skip
        mr = self._new_mr(p, source, target, data["title"], data.get("description") or "")
        return web.json_response(self._mr_json(p, mr), status=201)

    async def _get_mr(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        return web.json_response(self._mr_json(p, self._mr(p, m)))

    async def _update_mr(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        mr, data = self._mr(p, m), r[_JSON]
        for key in ("title", "description", "target_branch"):
            if key in data:
                mr[key] = data[key]
        event = data.get("state_event")
        if event == "close" and mr["state"] == "opened":
            mr.update(state="closed", closed_at=self._tick())
        elif event == "reopen" and mr["state"] == "closed":
            mr.update(state="opened", closed_at=None)
        mr["updated_at"] = self._tick()
        return web.json_response(self._mr_json(p, mr))

    async def _merge_mr(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        mr, data = self._mr(p, m), r[_JSON]
        if mr["state"] != "opened":
            raise _ApiError(405, "405 Method Not Allowed")
        head = p.branches.get(mr["source_branch"])
        if head is None:
            raise _ApiError(406, "Branch cannot be merged")
        if data.get("sha") and data["sha"] != head:
            raise _ApiError(409, "SHA does not match HEAD of source branch")
        mr["sha"], mr["commits"] = head, self._mr_commits(p, mr)
        target = p.branches[mr["target_branch"]]
        message = f"Merge branch '{mr['source_branch']}' into '{mr['target_branch']}'"
        tree = dict(p.commits[head].tree)
        merge_sha = self._store_commit(p, mr["target_branch"], tree, message, [target, head])
        mr.update(state="merged", merged_at=self._tick(), merge_commit_sha=merge_sha,
                  merge_status="merged", detailed_merge_status="not_open")  # fmt: skip
        if data.get("should_remove_source_branch"):
            p.branches.pop(mr["source_branch"], None)
        return web.json_response(self._mr_json(p, mr))

    async def _list_notes(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        return self._page(r, list(p.notes.get(self._mr(p, m)["iid"], [])))

    async def _create_note(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        mr = self._mr(p, m)
        if not r[_JSON].get("body"):
            raise _ApiError(400, "body is missing", key="error")
        note = {"id": next(self._ids), "type": None, "body": r[_JSON]["body"],
                "author": self._user(), "created_at": self._tick(), "updated_at": self._tick(),
                "system": False, "noteable_id": mr["id"], "noteable_type": "MergeRequest",
                "noteable_iid": mr["iid"], "resolvable": False, "confidential": False}  # fmt: skip
        p.notes.setdefault(mr["iid"], []).append(note)
        mr["user_notes_count"] += 1
        return web.json_response(note, status=201)

    async def _compare(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        """`GET .../repository/compare?from=&to=`: the commits reachable from `to` and not
        from `from`, oldest first (GitLab's order)."""
        old, new = p.resolve(r.query.get("from", "")), p.resolve(r.query.get("to", ""))
        if old is None or new is None:
            raise _ApiError(404, "404 Ref Not Found")
        seen = set(p.ancestors(old.id))
        shas = [c for c in p.ancestors(new.id) if c not in seen]
        commits = sorted((p.commits[c] for c in shas), key=lambda c: c.created_at)
        return web.json_response({
            "commit": new.to_json(p), "commits": [c.to_json(p) for c in commits],
            "diffs": [], "compare_timeout": False, "compare_same_ref": old.id == new.id,
        })  # fmt: skip

    async def _approvals(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        """`GET .../merge_requests/:iid/approvals`: one approval required (as a protected
        branch rule would ask)."""
        mr = self._mr(p, m)
        by = list(mr.get("approved_by", []))
        required = int(mr.get("approvals_required", 1))
        return web.json_response({
            "id": mr["id"], "iid": mr["iid"], "project_id": p.id, "state": mr["state"],
            "approved": len(by) >= required, "approvals_required": required,
            "approvals_left": max(required - len(by), 0), "approved_by": by,
        })  # fmt: skip

    async def _list_pipelines(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        found = sorted(p.pipelines.values(), key=lambda x: -x["id"])
        for key in ("sha", "ref", "status", "source"):
            if r.query.get(key):
                found = [x for x in found if x[key] == r.query[key]]
        basic = ("id", "iid", "project_id", "sha", "ref", "status", "source", "created_at",
                 "updated_at", "web_url")  # fmt: skip
        return self._page(r, [{k: x[k] for k in basic} for x in found])

    async def _get_pipeline(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        if int(m["pid"]) not in p.pipelines:
            raise _ApiError(404, "404 Not found")
        return web.json_response(p.pipelines[int(m["pid"])])

    async def _job_trace(self, p: _Project, r: web.Request, m: dict[str, str]) -> web.Response:
        if int(m["job"]) not in p.traces:
            raise _ApiError(404, "404 Not found")
        return web.Response(text=p.traces[int(m["job"])], content_type="text/plain")
