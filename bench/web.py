"""Benchmark: the pages — the board rendered for 200 components x 3 environments, and one
announcement fanned out over SSE to 50 open pages — each as a ratio to a bare aiohttp handler
measured in the same run.

- board: sequential GETs of a handler that renders the real `board.html` (the real Jinja
  environment, view classes and templates of `bot.web`) over a board of 200 x 3 cells with
  versions, health, a few alerts, locks and deploys in flight; baseline: the same number of
  GETs of a handler that answers "ok". Gathering the data is the `status` bench's figure.
- fan-out: 50 clients hold `GET /events` open (the real `Feed.stream`); each announcement
  goes through `Feed.publish` and is timed until the last of the 50 pages has read it;
  baseline: 50 concurrent GETs of the bare handler, timed until the last answer.

Loopback only, bounded in count; the servers stop at the end. Prints two JSON objects.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = 200
ENVS = ("toolsbeta", "tools", "canary")
BOARD_REQUESTS = 40
BARE_REQUESTS = 400
PAGES = 50
EVENTS = 100


def _board() -> Any:
    from bot.store.sal import SalEntry
    from bot.web.board import BoardView, CellView, InFlightView, RowView, WindowView

    def version(n: int) -> str:
        return f"0.0.{n}-20261120{n % 24:02d}0000-{n * 7919 % 16**8:08x}"

    rows = []
    for i in range(COMPONENTS):
        cells = []
        for j, env in enumerate(ENVS):
            alert = (i + j) % 37 == 0
            cells.append(CellView(
                env=env, state="alert" if alert else "ok",
                words="ALERT drift" if alert else "as pinned", live=version(100 + i),
                live_age="3h", live_unknown=None, pinned=[version(100 + i + (1 if alert else 0))],
                pinned_unknown=None, as_pinned=not alert, bump=None, health="2/2 ready",
                health_ok=True, lock="locked by ana: incident" if i % 50 == 0 else None,
                alerts=["drift: live is not pinned"] if alert else [], deploying=None,
            ))  # fmt: skip
        rows.append(RowView(
            component=f"component-{i:03d}", latest=version(101 + i), latest_unknown=None,
            step="step 4 of 6", step_k=4, step_n=6, step_label="live in toolsbeta",
            pipeline=None, pipeline_text=None, news=None, cells=cells,
        ))  # fmt: skip
    sal = [SalEntry(actor="irc:ana", action="apply", message=f"ana: c {version(1)} -> "
                    f"{version(2)} in tools (T{1000 + n})", ts="2026-11-26T10:00:00Z", id=n)
           for n in range(5)]  # fmt: skip
    return BoardView(
        envs=list(ENVS), rows=rows,
        alerts=[f"component-{i:03d} tools: drift" for i in range(0, COMPONENTS, 37)],
        windows=[WindowView("tools", "Mon-Thu 13:00-17:00 UTC", False, "closed")],
        in_flight=[InFlightView(1, "component-001", "tools", version(2), "applying", "irc:ana",
                                "1m05s")],  # fmt: skip
        sal=sal, generated="2026-11-26 10:00:00 UTC", healthy=590, attention=10,
    )  # fmt: skip


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _timed_gets(http: aiohttp.ClientSession, url: str, n: int) -> tuple[float, int]:
    size = 0
    start = time.perf_counter()
    for _ in range(n):
        async with http.get(url) as r:
            size = len(await r.read())
            assert r.status == 200
    return (time.perf_counter() - start) / n, size


async def _board_figure(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    await _timed_gets(http, base + "/bare", 50)  # warm up both
    await _timed_gets(http, base + "/board", 3)
    bare, _ = await _timed_gets(http, base + "/bare", BARE_REQUESTS)
    board, size = await _timed_gets(http, base + "/board", BOARD_REQUESTS)
    return {
        "bench": "web_board",
        "what": f"board page for {COMPONENTS} components x {len(ENVS)} environments, rendered",
        "board_ms": round(board * 1000, 2),
        "bare_ms": round(bare * 1000, 3),
        "ratio_to_bare": round(board / bare, 1),
        "page_kb": round(size / 1024, 1),
    }


async def _fanout_figure(http: aiohttp.ClientSession, base: str, feed: Any) -> dict[str, Any]:
    from bot.delivery.announcer import Announced

    received = [0] * PAGES
    got_all = asyncio.Event()
    wanted = 0

    async def page(i: int, ready: asyncio.Event, opened: list[int]) -> None:
        async with http.get(base + "/events") as r:
            await r.content.readline()  # `retry:` is written once the page is registered
            opened.append(i)
            if len(opened) == PAGES:
                ready.set()
            async for line in r.content:
                if line.startswith(b"event: announce"):
                    received[i] += 1
                    if min(received) >= wanted:
                        got_all.set()

    ready = asyncio.Event()
    opened: list[int] = []
    tasks = [asyncio.create_task(page(i, ready, opened)) for i in range(PAGES)]
    await asyncio.wait_for(ready.wait(), 10)
    assert feed.listeners == PAGES
    fanout = []
    for n in range(EVENTS):
        wanted = n + 1
        got_all.clear()
        start = time.perf_counter()
        feed.publish(Announced(f"builds-api: pipeline {n}: stage 2/3 test", "builds-api",
                               f"pipeline:{n}", False, "#ops", time.time()))  # fmt: skip
        await asyncio.wait_for(got_all.wait(), 10)
        fanout.append(time.perf_counter() - start)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    bare = []
    for _ in range(20):
        start = time.perf_counter()
        await asyncio.gather(*(http.get(base + "/bare") for _ in range(PAGES)))
        bare.append(time.perf_counter() - start)
    f50, b50 = statistics.median(fanout), statistics.median(bare)
    return {
        "bench": "web_fanout",
        "what": f"one announcement to {PAGES} open pages over SSE, until the last has it",
        "fanout_p50_ms": round(f50 * 1000, 2),
        "fanout_max_ms": round(max(fanout) * 1000, 2),
        "bare_50_concurrent_p50_ms": round(b50 * 1000, 2),
        "ratio_to_bare": round(f50 / b50, 2),
        "events": EVENTS,
    }


async def _run() -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from bot.delivery.feed import Feed
    from bot.web import Templates

    board = _board()
    feed = Feed()
    app = web.Application()
    templates = Templates("https://phabricator.wikimedia.org/{task}")

    async def bare(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def board_page(request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=templates.render("board.html", {
            "board": board, "title": "board", "nav_auth": "none"}))  # fmt: skip

    app.router.add_get("/bare", bare)
    app.router.add_get("/board", board_page)
    app.router.add_get("/events", feed.stream)
    runner, base = await _serve(app)
    try:
        connector = aiohttp.TCPConnector(limit=PAGES + 10)
        async with aiohttp.ClientSession(connector=connector) as http:
            figures = [await _board_figure(http, base)]
            figures.append(await _fanout_figure(http, base, feed))
    finally:
        feed.close()
        await runner.cleanup()
    return figures


def main() -> None:
    for figure in asyncio.run(_run()):
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()
