"""The incident pages: what runs where, live, in a browser.

The pages (`Pages`), the access check and the templates; bot.http lists their routes with
every other. Templates and static files ship inside this package: no CDN and no build step,
so the pages work inside a cluster without internet.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot import __version__
from bot.web.templating import filters

HERE = Path(__file__).parent
STATIC = HERE / "static"


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
