"""The bot's HTTP server: health, readiness, metrics, SAL/status pages, deploy logs, webhooks.

The HTML pages, the live feed and the access check are in `bot.web`.

Routes are thin: each reads from or hands off to a service. The webhook route
(`POST /webhooks/gitlab`) is added by the composition root with bot.webhooks.add_webhook_route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.deploy.deployer import Deployer
from bot.gitlab.inbox import EventWorker
from bot.services import Services
from bot.status.board import StatusBoard
from bot.status.lines import status_lines
from bot.web import add_pages
from bot.web.access import ACCESS, LOGS_ROLE

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]
ChatState = Callable[[], dict[str, bool]]
RoomStates = Callable[[], dict[str, dict[str, bool]]]  # adapter -> configured room -> joined


def build_http_app(
    services: Services, board: StatusBoard, deployer: Deployer, events: EventWorker,
    ready: ReadyCheck, chat_state: ChatState, room_states: RoomStates = dict,
) -> web.Application:  # fmt: skip
    app = web.Application(client_max_size=services.config.http.max_body_bytes)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready_(request: web.Request) -> web.Response:
        ok, why = await ready()
        return web.Response(text=why + "\n", status=200 if ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        services.metrics.queue_depth.labels("outbox").set(await services.outbox.pending_count())
        services.metrics.queue_depth.labels("webhook_events").set(await events.pending_count())
        services.metrics.oldest_event_age.set(await events.oldest_pending_age())
        for adapter_name, up in chat_state().items():
            services.metrics.chat_connected.labels(adapter_name).set(1 if up else 0)
        for adapter_name, rooms in room_states().items():
            services.metrics.rooms_joined.labels(adapter_name).set(sum(rooms.values()))
        return web.Response(
            body=services.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def sal(request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = max(1, min(int(q.get("limit", "50")), 1000))
        except ValueError:
            return web.Response(status=400, text="limit must be a number\n")
        entries = await services.sal.query(
            component=q.get("component"), env=q.get("env"), actor=q.get("actor"), limit=limit
        )
        lines = [
            f"#{e.id} {e.ts} {e.action} {e.component or '-'} {e.env or '-'} {e.result or '-'}"
            f" {e.message}" + (f" log: {e.log_url}" if e.log_url else "")
            for e in entries
        ]
        return web.Response(text="\n".join(lines) + "\n")

    async def status(request: web.Request) -> web.Response:
        cfg = services.config
        lines = await status_lines(board, list(cfg.components), cfg.env_names)
        return web.Response(text="\n".join(lines) + "\n")

    async def diff(request: web.Request) -> web.Response:
        diff_id = request.match_info["id"]
        if not request.app[ACCESS].may_read(request, await services.diffs.gate(diff_id)):
            return web.Response(status=403, text=LOGS_ROLE)
        text = await services.diffs.load(diff_id)
        if text is None:
            return web.Response(status=404, text="no such diff\n")
        return web.Response(text=text, content_type="text/plain")

    async def deploy_log(request: web.Request) -> web.Response:
        deploy_id = request.match_info["id"]
        if not deploy_id.isdigit():
            return web.Response(status=404, text="no such deploy\n")
        path = deployer.report.log_path(int(deploy_id))
        try:
            text = await asyncio.to_thread(path.read_text, "utf-8", "replace")
        except OSError:
            return web.Response(status=404, text=f"no log for deploy #{deploy_id}\n")
        return web.Response(text=services.redactor(text), content_type="text/plain")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ready", ready_)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/deploys/{id}/log", deploy_log)
    # the pages; these text views still answer curl and `Accept: text/plain`
    add_pages(app, services, board, deployer, {"/sal": sal, "/status": status, "/diffs/{id}": diff})
    return app
