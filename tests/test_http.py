"""Health, readiness and metrics endpoints of a running bot."""

from __future__ import annotations

import io

import aiohttp

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config


async def test_health_ready_metrics(demo_config: Config) -> None:
    stdout = io.StringIO()
    app = App(demo_config, console=ConsoleAdapter(io.StringIO("!whoami\n!nope\n"), stdout, "t"))
    base = f"http://{demo_config.http.listen}"
    await app.start()
    try:
        await app.console.finished.wait()  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as r:
                assert r.status == 200
            async with http.get(base + "/ready") as r:
                assert r.status == 200 and "ready" in await r.text()
            async with http.get(base + "/metrics") as r:
                text = await r.text()
                assert r.status == 200
                assert 'deploybot_commands_total{command="whoami",result="ok"} 1.0' in text
                assert 'deploybot_commands_total{command="(unknown)",result="unknown"} 1.0' in text
                assert 'deploybot_queue_depth{queue="webhook_events"} 0.0' in text
                assert 'deploybot_chat_connected{adapter="console"} 1.0' in text
        await app.store.close()
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/ready") as r:
                assert r.status == 503 and "store" in await r.text()
    finally:
        await app.stop()
