"""The incident pages: what runs where, live, in a browser.

The pages (`Pages`), the access check and the templates; bot.http lists their routes with
every other. Templates and static files ship inside this package: no CDN and no build step,
so the pages work inside a cluster without internet.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import __version__
from bot.web.templating import filters

if TYPE_CHECKING:
    import jinja2

HERE = Path(__file__).parent
STATIC = HERE / "static"


class Templates:
    """The pages' Jinja environment (autoescaped; unknown names are errors), made when the
    first page is rendered: a bot nobody browses never loads jinja2 (~3.5 MB)."""

    def __init__(self, task_url: str) -> None:
        self.task_url = task_url
        self._env: jinja2.Environment | None = None

    def env(self) -> jinja2.Environment:
        if self._env is None:
            import jinja2

            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(HERE / "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
            )
            env.filters.update(filters(self.task_url))
            env.globals["static"] = lambda name: f"/static/{name}?v={__version__}"
            self._env = env
        return self._env

    def render(self, template: str, context: dict[str, Any]) -> str:
        return self.env().get_template(template).render(context)
