"""The pages: the board (`/status`), `/sal`, `/diffs/<id>`, `/deploys/<id>`,
`/components/<c>`, and the login form (their routes are in the route table, bot.http). Server-rendered with Jinja2 (autoescaped); the small
scripts in `static/` only listen to the live streams. A request that does not ask for HTML
(curl, `Accept: text/plain`) gets the plain-text view the route had before.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.control.releases import SourceError
from bot.core.git import GitError
from bot.core.tasks import within
from bot.delivery.announcer import Announced
from bot.delivery.feed import Feed
from bot.deploy.deployer import Deployer
from bot.deploy.records import deploy_rows
from bot.services import Services
from bot.status.board import StatusBoard
from bot.web import Templates
from bot.web.access import COOKIE, LOGS_ROLE, SESSION_SECONDS, Access, safe_next
from bot.web.board import build_board, row_news
from bot.web.deploys import read_from, state_of, stream_deploy
from bot.web.diffview import Move, brought, diff_section, lines_of, moves_of
from bot.web.history import chart, kind_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SINCE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?Z?)?$")


def wants_html(request: web.Request) -> bool:
    """A browser asks for text/html; curl (`*/*`) and `Accept: text/plain` get text."""
    best: dict[str, float] = {}
    for part in request.headers.get("Accept", "").split(","):
        kind, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[kind.strip().lower()] = q
    return best.get("text/html", 0.0) > 0 and best["text/html"] >= best.get("text/plain", 0.0)


class Pages:
    def __init__(
        self, services: Services, board: StatusBoard, deployer: Deployer, feed: Feed,
        access: Access, templates: Templates,
    ) -> None:  # fmt: skip
        self.templates = templates
        self.services = services
        self.board = board
        self.deployer = deployer
        self.feed = feed
        self.access = access
        self.closing = asyncio.Event()  # set at shutdown: open deploy streams end

    def _page(self, request: web.Request, template: str, **ctx: Any) -> web.Response:
        ctx.setdefault("title", "deploybot")
        ctx["nav_auth"] = self.access.mode
        return web.Response(
            text=self.templates.render(template, ctx),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    @web.middleware
    async def not_found(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A browser asking for something that is not there gets a page with the navigation
        bar and the reason (curl still gets the one text line)."""
        try:
            return await handler(request)
        except web.HTTPNotFound as exc:
            if not wants_html(request) or request.path.startswith(("/webhooks/", "/static/")):
                raise
            why = (exc.text or "").strip() if exc.text and exc.text != "404: Not Found" else ""
            resp = self._page(request, "404.html", title="not found", path=request.path,
                              why=why or f"nothing at {request.path[:200]}")  # fmt: skip
            resp.set_status(404)
            return resp

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/status")

    async def status(self, request: web.Request) -> web.StreamResponse:
        view = await build_board(
            self.services, self.board, row_news(
                Announced(**e.data)  # type: ignore[arg-type]
                for e in self.feed.recent
                if e.kind == "announce"
            ),
            freezes=await self.deployer.freezes.active(None), deployer=self.deployer,
        )  # fmt: skip
        template = "board_body.html" if request.query.get("part") == "board" else "board.html"
        return self._page(request, template, board=view, title="deploybot board")

    async def sal(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        cfg = self.services.config
        error = None
        try:
            limit = max(1, min(int(q.get("limit", "100")), 1000))
        except ValueError:
            limit, error = 100, "limit must be a number"
        since = q.get("since", "").strip() or None
        if since and not _SINCE_RE.match(since):
            error, since = (
                f"since {since[:40]!r}: expected e.g. 2026-11-01 or 2026-11-01T12:00",
                None,
            )
        component = q.get("component") or None
        env = q.get("env") or None
        actor = (q.get("actor") or "").strip()[:100] or None
        entries = await self.services.sal.query(
            component=component, env=env, actor=actor,
            since=since.replace(" ", "T") if since else None, limit=limit,
        )  # fmt: skip
        return self._page(
            request, "sal.html", title="Server Admin Log", entries=entries, error=error,
            components=list(cfg.components), envs=cfg.env_names,
            f={"component": component or "", "env": env or "", "actor": actor or "",
               "since": since or "", "limit": limit},
        )  # fmt: skip

    async def diff(self, request: web.Request) -> web.StreamResponse:
        diff_id = request.match_info["id"]
        if not self.access.may_read(request, await self.services.diffs.gate(diff_id)):
            raise web.HTTPForbidden(text=LOGS_ROLE)
        text = await self.services.diffs.load(diff_id)
        if text is None:
            raise web.HTTPNotFound(text="no such diff\n")
        text = self.services.redactor(text)
        moves = moves_of(text)
        brings: list[tuple[Move, list[Any], str | None]] = []
        ran: list[tuple[dict[str, Any], str]] = []
        bumper = self.board.bumper
        for move in moves:
            why = None
            tags: list[Any] = []
            if bumper is not None and move.new:
                try:
                    all_tags = await within(bumper.source.tags(move.component), 10)
                    tags = brought(all_tags, move.old, move.new)
                except (SourceError, GitError, TimeoutError) as exc:
                    why = f"release tags unknown ({exc or 'timed out'})"
            brings.append((move, tags, why))
            for row in await deploy_rows(self.services.store, component=move.component, limit=50):
                if row["version"] == move.new and row["env"] == move.env and len(ran) < 3:
                    log = (await read_from(self.deployer.report.log_path(row["id"]), 0)).decode(
                        "utf-8", "replace"
                    )
                    section = diff_section(self.services.redactor(log))
                    if section is not None:
                        ran.append((row, section))
        return self._page(
            request, "diff.html", title=f"diff {diff_id}", diff_id=diff_id,
            lines=lines_of(text), brings=brings, ran=ran,
        )  # fmt: skip

    async def _deploy_row(self, request: web.Request) -> dict[str, Any]:
        raw = request.match_info["id"]
        rows = (
            await deploy_rows(self.services.store, deploy_id=int(raw), limit=1)
            if raw.isdigit()
            else []
        )
        if not rows:
            raise web.HTTPNotFound(text=f"no such deploy #{raw[:20]}\n")
        return rows[0]

    async def deploy(self, request: web.Request) -> web.StreamResponse:
        row = await self._deploy_row(request)
        log = (await read_from(self.deployer.report.log_path(row["id"]), 0)).decode(
            "utf-8", "replace"
        )
        log = self.services.redactor(log)
        state = state_of(row, log)
        if not wants_html(request):
            head = (
                f"deploy #{row['id']} {row['action']} {row['component']} {row['version']}"
                f" to {row['env']} by {row['actor']}: {row['state']} ({state['elapsed']})"
            )
            return web.Response(text=head + "\n" + (row["result"] or "") + "\n\n" + log)
        # a running deploy's page starts empty and the stream fills in the log from the top
        return self._page(
            request, "deploy.html", title=f"deploy #{row['id']}", d=row, state=state,
            log=log if state["finished"] else "",
        )  # fmt: skip

    async def deploy_stream(self, request: web.Request) -> web.StreamResponse:
        row = await self._deploy_row(request)
        return await stream_deploy(
            request, self.services.store, self.deployer.report.log_path(row["id"]),
            self.services.redactor, row["id"], self.closing,
        )  # fmt: skip

    async def component(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["component"]
        cfg = self.services.config
        if name not in cfg.components:
            raise web.HTTPNotFound(text=f"no component {name[:60]!r}\n")
        rows = await deploy_rows(self.services.store, component=name, limit=300)
        drawn = chart(rows, cfg.env_names, time.time())
        return self._page(
            request, "component.html", title=f"{name} history", component=name, chart=drawn,
            rows=rows[:100], kind_of=kind_of,
        )  # fmt: skip

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return self._page(request, "login.html", title="log in", error=None,
                          next=safe_next(request.query.get("next")))  # fmt: skip

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = safe_next(str(form.get("next") or ""))
        wait = self.access.throttled(request)
        if wait:
            return web.Response(
                status=429, text=f"too many wrong tokens; try again in {wait:.0f}s\n",
                headers={"Retry-After": str(int(wait) + 1)},
            )  # fmt: skip
        value = self.access.login_ok(request, str(form.get("token") or ""))
        if value is None:
            # the form again, with the reason (200: a page for a person, not an API answer)
            return self._page(request, "login.html", title="log in", next=target,
                              error="wrong token")  # fmt: skip
        resp = web.HTTPSeeOther(target)
        resp.set_cookie(COOKIE, value, httponly=True, samesite="Strict", path="/",
                        secure=self.access.secure(request), max_age=SESSION_SECONDS)  # fmt: skip
        raise resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """End the session on the server (its cookie is worthless from now on)."""
        self.access.logout(request)
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE, path="/")
        raise resp
