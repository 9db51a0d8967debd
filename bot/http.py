"""The bot's HTTP server: the one route table, and the endpoints that answer plain text.

Every route is listed in `route_table`: health, readiness, metrics, the webhook intake,
the pages (bot.web), the live feed, deploy logs, diffs and static files. Routes are thin:
each reads from or hands off to a service. A page that also has a text view answers curl
and `Accept: text/plain` with the text (`negotiated`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from bot.core.health import is_store_failure, store_reason
from bot.delivery.feed import Feed
from bot.deploy.deployer import Deployer
from bot.gitlab.inbox import EventWorker
from bot.gitlab.webhooks import WebhookIngest
from bot.services import Services
from bot.status.board import StatusBoard
from bot.status.lines import status_lines
from bot.web import STATIC, Templates
from bot.web.access import ACCESS, LOGS_ROLE, Access
from bot.web.pages import Pages, wants_html

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def store_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A store failure under any route is a 503 with one line, never a 500."""
    try:
        return await handler(request)
    except Exception as exc:
        if not is_store_failure(exc):
            raise
        reason = store_reason(exc).strip().splitlines()
        text = f"store unavailable: {reason[0] if reason else type(exc).__name__}; retry\n"
        return web.Response(status=503, text=text)


class Liveness(Protocol):
    """What readiness and the metrics ask of the running bot."""

    async def ready(self) -> tuple[bool, str]: ...

    def chat_state(self) -> dict[str, bool]: ...  # adapter -> connected

    def room_states(self) -> dict[str, dict[str, bool]]: ...  # adapter -> room -> joined

    async def store_up(self) -> bool: ...


class PlainText:
    """The endpoints that answer text: health, readiness, metrics, deploy logs, and the text
    views of the SAL, the status board and diffs."""

    def __init__(
        self, services: Services, board: StatusBoard, deployer: Deployer, events: EventWorker,
        live: Liveness,
    ) -> None:  # fmt: skip
        self.services = services
        self.board = board
        self.deployer = deployer
        self.events = events
        self.live = live

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(self, request: web.Request) -> web.Response:
        ok, why = await self.live.ready()
        return web.Response(text=why + "\n", status=200 if ok else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        """Always answers: what needs the store is skipped while it is down (the leader
        gauge is read from memory, `deploybot_store_up` says why the rest is stale)."""
        m = self.services.metrics
        up = await self.live.store_up()
        m.store_up.set(1 if up else 0)
        if up:
            try:
                await self._store_gauges()
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                m.store_up.set(0)
        for adapter_name, up in self.live.chat_state().items():
            m.chat_connected.labels(adapter_name).set(1 if up else 0)
        for adapter_name, rooms in self.live.room_states().items():
            m.rooms_joined.labels(adapter_name).set(sum(rooms.values()))
        return web.Response(
            body=m.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def _store_gauges(self) -> None:
        m = self.services.metrics
        m.queue_depth.labels("outbox").set(await self.services.outbox.pending_count())
        m.queue_depth.labels("webhook_events").set(await self.events.pending_count())
        m.oldest_event_age.set(await self.events.oldest_pending_age())

    async def sal(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = max(1, min(int(q.get("limit", "50")), 1000))
        except ValueError:
            return web.Response(status=400, text="limit must be a number\n")
        entries = await self.services.sal.query(
            component=q.get("component"), env=q.get("env"), actor=q.get("actor"), limit=limit
        )
        lines = [
            f"#{e.id} {e.ts} {e.action} {e.component or '-'} {e.env or '-'} {e.result or '-'}"
            f" {e.message}" + (f" log: {e.log_url}" if e.log_url else "")
            for e in entries
        ]
        return web.Response(text="\n".join(lines) + "\n")

    async def status(self, request: web.Request) -> web.Response:
        cfg = self.services.config
        lines = await status_lines(self.board, list(cfg.components), cfg.env_names)
        return web.Response(text="\n".join(lines) + "\n")

    async def diff(self, request: web.Request) -> web.Response:
        diff_id = request.match_info["id"]
        if not request.app[ACCESS].may_read(request, await self.services.diffs.gate(diff_id)):
            return web.Response(status=403, text=LOGS_ROLE)
        text = await self.services.diffs.load(diff_id)
        if text is None:
            return web.Response(status=404, text="no such diff\n")
        return web.Response(text=text, content_type="text/plain")

    async def deploy_log(self, request: web.Request) -> web.Response:
        deploy_id = request.match_info["id"]
        if not deploy_id.isdigit():
            return web.Response(status=404, text="no such deploy\n")
        path = self.deployer.report.log_path(int(deploy_id))
        try:
            text = await asyncio.to_thread(path.read_text, "utf-8", "replace")
        except OSError:
            return web.Response(status=404, text=f"no log for deploy #{deploy_id}\n")
        return web.Response(text=self.services.redactor(text), content_type="text/plain")


def negotiated(page: Handler, text: Handler) -> Handler:
    """The page for a browser, the text view for curl and `Accept: text/plain`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await (page if wants_html(request) else text)(request)

    return handler


def route_table(
    plain: PlainText, pages: Pages, feed: Feed, webhooks: WebhookIngest
) -> list[web.AbstractRouteDef]:
    """Every HTTP route of the bot."""
    return [
        web.get("/healthz", plain.healthz),
        web.get("/ready", plain.ready),
        web.get("/metrics", plain.metrics),
        web.get("/deploys/{id}/log", plain.deploy_log),
        web.get("/", pages.root),
        web.get("/status", negotiated(pages.status, plain.status)),
        web.get("/events", feed.stream),  # the live feed (Server-Sent Events)
        web.get("/sal", negotiated(pages.sal, plain.sal)),
        web.get("/diffs/{id}", negotiated(pages.diff, plain.diff)),
        web.get("/deploys/{id}", pages.deploy),  # the page, or its text for curl
        web.get("/deploys/{id}/stream", pages.deploy_stream),
        web.get("/components/{component}", pages.component),
        web.get("/login", pages.login_form),
        web.post("/login", pages.login),
        web.post("/logout", pages.logout),
        web.static("/static/", STATIC),
        web.post("/webhooks/gitlab", webhooks.handle),  # GitLab: verify, store, answer
    ]


def build_http_app(
    services: Services, board: StatusBoard, deployer: Deployer, events: EventWorker,
    webhooks: WebhookIngest, live: Liveness,
) -> web.Application:  # fmt: skip
    """The aiohttp application: templates, the access check, the route table, and the live
    feed fed by the announcer (closed at shutdown with the open deploy streams)."""
    app = web.Application(
        client_max_size=services.config.http.max_body_bytes, middlewares=[store_errors]
    )
    access = Access(services.config)
    app[ACCESS] = access
    feed = Feed()
    pages = Pages(services, board, deployer, feed, access, Templates(services.config.http.task_url))
    app.middlewares.append(access.middleware)
    app.middlewares.append(pages.not_found)  # inside the access check: pages only for readers
    plain = PlainText(services, board, deployer, events, live)
    app.add_routes(route_table(plain, pages, feed, webhooks))
    unlisten = services.announcer.listen(feed.publish)

    async def shutdown(app: web.Application) -> None:
        pages.closing.set()
        feed.close()
        unlisten()

    app.on_shutdown.append(shutdown)
    return app
