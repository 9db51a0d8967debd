"""The incident pages: what runs where, live, in a browser.

`add_pages` puts the pages, the live feed (`/events`, fed by the announcer) and the access
check onto the bot's HTTP app. Templates and static files ship inside this package: no CDN
and no build step, so the pages work inside a cluster without internet.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot import __version__
from bot.delivery.feed import Feed
from bot.deploy.deployer import Deployer
from bot.services import Services
from bot.status.board import StatusBoard
from bot.web.access import ACCESS, Access
from bot.web.pages import Handler, Pages
from bot.web.templating import filters

HERE = Path(__file__).parent


def setup_templates(app: web.Application, task_url: str) -> jinja2.Environment:
    """The pages' Jinja environment on `app` (autoescaped; unknown names are errors)."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(filters(task_url))
    env.globals["static"] = lambda name: f"/static/{name}?v={__version__}"
    return env


def add_pages(
    app: web.Application, services: Services, board: StatusBoard, deployer: Deployer,
    text_views: dict[str, Handler],
) -> Feed:  # fmt: skip
    """Add the pages to `app`; `text_views` (path -> handler) answer non-HTML requests."""
    access = Access(services.config)
    app[ACCESS] = access
    feed = Feed()
    pages = Pages(services, board, deployer, feed, access, text_views)
    setup_templates(app, services.config.http.task_url)
    app.middlewares.append(access.middleware)
    pages.routes(app)
    app.router.add_static("/static/", HERE / "static")
    unlisten = services.announcer.listen(feed.publish)

    async def shutdown(app: web.Application) -> None:
        pages.closing.set()
        feed.close()
        unlisten()

    app.on_shutdown.append(shutdown)
    return feed
