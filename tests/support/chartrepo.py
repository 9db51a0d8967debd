"""A classic Helm chart repository on loopback: `GET /index.yaml` as the real ones serve it
(`entries.<chart>[]` with version, appVersion, created, urls)."""

from __future__ import annotations

from types import TracebackType

import yaml
from aiohttp import web


class ChartRepo:
    """`async with ChartRepo({"cert-manager": ["v1.11.0", ...]}) as repo:` then `repo.url`."""

    def __init__(self, charts: dict[str, list[str]]) -> None:
        self.charts = charts
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    def index(self) -> str:
        entries = {
            chart: [
                {
                    "name": chart,
                    "version": v,
                    "appVersion": v,
                    "created": "2024-01-01T00:00:00Z",
                    "urls": [f"charts/{chart}-{v}.tgz"],
                }
                for v in versions
            ]
            for chart, versions in self.charts.items()
        }
        return yaml.safe_dump({"apiVersion": "v1", "entries": entries})

    async def _index(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(text=self.index(), content_type="text/x-yaml")

    async def __aenter__(self) -> ChartRepo:
        app = web.Application()
        app.router.add_get("/index.yaml", self._index)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
