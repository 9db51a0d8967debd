"""The pages in a real Chromium against the real bot (`deploybot run` over the demo's data):
what a person sees on the board, a webhook changing an open page, a deploy's log streaming,
and pages refusing a visitor without the token while webhooks still work; at 1280 and 390 px,
each cell's next step (a command the bot takes), a waiting review in its cell before and after
a restart, alerts whole and once, no sideways scroll, and the history chart's labels apart.

Screenshots of the board and of a deploy page are taken on the way (`make screenshots` saves them to docs/screenshots/ for the README).
"""

from __future__ import annotations

import getpass
import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot.demo.setup import prepare
from bot.web.history import CHAR_W
from tests.support.botproc import BotProcess
from tests.support.browser import chromium, require_chromium, screenshot

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "config" / "demo" / "payloads"
GATE = """\
import os, subprocess, sys, time
print("demo deploy waits for the test's gate", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.05)  # polling a file the test creates
print("gate open", flush=True)
sys.exit(subprocess.call(sys.argv[2:]))
"""


async def demo_bot(
    tmp_path: Path, env: dict[str, str] | None = None, **http: Any
) -> tuple[BotProcess, Path]:
    """The demo's data and config (no console: the bot runs headless), its `apply` held at
    a gate file the test opens; returns the bot (not started) and the gate path."""
    demo = tmp_path / "demo"
    data = yaml.safe_load((await prepare(demo)).read_text())
    data["chat"].pop("console")
    gate = tmp_path / "gate"
    (tmp_path / "gate.py").write_text(GATE)
    data["deploy"]["apply"] = [sys.executable, str(tmp_path / "gate.py"), str(gate),
                               *data["deploy"]["apply"]]  # fmt: skip
    data["http"].update(http)
    return BotProcess(tmp_path / "bot", data, env), gate


def expected(demo: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(component, env) -> (live, pinned), read from the demo's files, not through the bot."""
    out = {}
    bare = demo / "git" / "toolforge-deploy.git"
    for env in ("toolsbeta", "tools"):
        live = yaml.safe_load((demo / "live" / f"{env}.yaml").read_text())
        for component in ("builds-api", "jobs-api"):
            for name in (f"{env}.yaml", f"{env}.yaml.gotmpl"):
                shown = subprocess.run(
                    ["git", "--git-dir", str(bare), "show",
                     f"main:components/{component}/values/{name}"],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if shown.returncode == 0:
                    pinned = re.search(r"^chartVersion: (\S+)", shown.stdout, re.M)
                    assert pinned is not None
                    out[(component, env)] = (live[component], pinned.group(1))
    return out


async def post(bot: BotProcess, name: str, kind: str) -> int:
    return await bot.post_webhook(json.loads((PAYLOADS / name).read_text()), kind)


async def test_board_shows_every_cell_and_a_webhook_changes_it_live(tmp_path: Path) -> None:
    require_chromium()
    bot, _ = await demo_bot(tmp_path)
    await bot.start()
    try:
        async with chromium() as browser:
            page = await browser.open_page(bot.url + "/status")
            want = expected(tmp_path / "demo")
            assert len(want) == 4
            for (component, env), (live, pinned) in want.items():
                cell = page.locator(f'tr[data-component="{component}"] td[data-env="{env}"]')
                text = await cell.inner_text()
                assert f"live {live}" in text, text
                assert ("pinned = live" if live == pinned else f"pinned {pinned}") in text, text
                assert re.search(r"ALERT|as pinned|drift|ok", text), text  # a state in words
            header = await page.locator("table.board thead").inner_text()
            assert header.split() == ["component", "toolsbeta", "tools"]  # promotion order
            assert (
                "step 2 of 5" in await page.locator('tr[data-component="builds-api"]').inner_text()
            )
            await page.locator("#live", has_text="live").wait_for(timeout=5000)
            await page.evaluate("window.__sameDocument = true")
            assert await post(bot, "pipeline_running.json", "Pipeline Hook") == 200
            row = page.locator('tr[data-component="builds-api"]')
            await row.get_by_text(re.compile(r"stage 2/3")).first.wait_for(timeout=5000)
            assert await page.evaluate("window.__sameDocument") is True  # no reload
            # the board re-reads itself: the pipeline line comes from the store, not the feed
            pipeline = row.locator(".pipeline")
            await pipeline.wait_for(timeout=5000)
            assert "stage 2/3 test" in await pipeline.inner_text()
            assert "stage 2/3" in await page.locator("#news").inner_text()
            await check_alerts(page, bot, at_least=3)  # drift, and undeployed in tools x2
            assert await check_steps(page) == 3
            await screenshot(page, "board.png")
            browser.assert_clean()
    finally:
        await bot.stop()


async def test_a_running_deploy_streams_its_log_and_steps(tmp_path: Path) -> None:
    require_chromium()
    bot, gate = await demo_bot(tmp_path)
    await bot.start()
    try:
        async with chromium() as browser:
            board = await browser.open_page(bot.url + "/status")
            await board.locator("#live", has_text="live").wait_for(timeout=5000)
            # a merged bump MR auto-applies builds-api in toolsbeta (it drifted in the demo)
            assert await post(bot, "mr_merged.json", "Merge Request Hook") == 200
            link = board.locator(".inflight a", has_text="deploy #1")
            await link.wait_for(timeout=10000)
            await link.click()
            await board.wait_for_url(re.compile(r"/deploys/1$"))
            page = board
            log = page.locator("#log")
            await log.get_by_text("waits for the test's gate").wait_for(timeout=10000)
            assert await page.locator("#state").inner_text() == "applying"
            assert "demo deploy step 'apply'" not in await log.inner_text()
            await page.evaluate("window.__sameDocument = true")
            gate.write_text("open")
            await log.get_by_text("demo deploy step 'apply'").wait_for(timeout=10000)
            await page.locator("#state", has_text="done").wait_for(timeout=10000)
            assert await page.evaluate("window.__sameDocument") is True  # streamed, not reloaded
            steps = await page.locator("#steps").inner_text()
            assert "deploycmd diff builds-api toolsbeta" in steps and "ok (exit 2" in steps
            assert "deploycmd apply builds-api toolsbeta" in steps and "ok (exit 0" in steps
            await page.locator("#live", has_text="finished").wait_for(timeout=5000)
            await screenshot(page, "deploy.png")
            # the component's history has the deploy, drawn on the server
            await page.goto(bot.url + "/components/builds-api")
            mark = page.locator("svg g.mark title")
            assert "deploy #1 auto-apply" in (await mark.first.text_content() or "")
            browser.assert_clean()
    finally:
        await bot.stop()


async def test_with_a_token_pages_refuse_strangers_and_webhooks_still_work(
    tmp_path: Path,
) -> None:
    require_chromium()
    bot, _ = await demo_bot(
        tmp_path, {"DEPLOYBOT_TEST_HTTP_TOKEN": "s3cret-page-token"},
        auth={"token_env": "DEPLOYBOT_TEST_HTTP_TOKEN"},
    )  # fmt: skip
    await bot.start()
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/status", "/sal", "/events", "/deploys/1", "/components/builds-api"):
                async with http.get(bot.url + path) as r:
                    assert r.status == 401, path
                    assert "s3cret" not in await r.text()
            async with http.get(bot.url + "/status", headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
            for path in ("/healthz", "/ready", "/metrics"):
                async with http.get(bot.url + path) as r:
                    assert r.status == 200, path
            assert await post(bot, "pipeline_running.json", "Pipeline Hook") == 200
            deadline = time.monotonic() + 10
            text = ""
            while "stage 2/3" not in text and time.monotonic() < deadline:
                async with http.get(
                    bot.url + "/status",
                    headers={
                        "Authorization": "Bearer s3cret-page-token",
                        "Accept": "text/html",
                    },  # fmt: skip
                ) as r:
                    assert r.status == 200
                    text = await r.text()
        assert "stage 2/3 test" in text  # the webhook was processed
        async with chromium() as browser:
            page = await browser.open_page(bot.url + "/status")
            await page.wait_for_url(re.compile(r"/login\?next="))
            assert "builds-api" not in await page.locator("main").inner_text()
            await page.fill("input[name=token]", "wrong")
            await page.click("button[type=submit]")
            await page.get_by_text("wrong token").wait_for(timeout=5000)
            await page.fill("input[name=token]", "s3cret-page-token")
            await page.click("button[type=submit]")
            await page.wait_for_url(re.compile(r"/status$"))
            await page.locator('tr[data-component="builds-api"]').wait_for(timeout=5000)
            await page.locator("#live", has_text="live").wait_for(timeout=5000)
            browser.assert_clean()
    finally:
        await bot.stop()


BBOXES = """() => Array.from(document.querySelectorAll('svg text')).map(t => {
  const b = t.getBBox();
  return {text: t.textContent, x: b.x, y: b.y, w: b.width, h: b.height};
})"""
NO_SIDE_SCROLL = (
    "() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"
)


async def console_bot(tmp_path: Path) -> BotProcess:
    """The demo with its console kept (commands typed through the bot's stdin) and tools a
    `review: true` environment."""
    data = yaml.safe_load((await prepare(tmp_path / "demo")).read_text())
    [tools] = [e for e in data["environments"] if e["name"] == "tools"]
    tools["review"] = True
    return BotProcess(tmp_path / "bot", data)


async def say(bot: BotProcess, line: str, reply: str) -> re.Match[str]:
    """Type a command; wait for the reply matching `reply` (a regex)."""
    since = len(bot.log_text())
    await bot.type(line)
    return await bot.wait_log(reply, within=30, since=since)


def accepted(command: str) -> bool:
    """Does the bot take `command` as typed: it parses, names a command, with its flags?"""
    from bot.app import COMMAND_MODULES
    from commands.parse import parse_line
    from commands.spec import CommandSet

    inv = parse_line(command, "!", "deploybot")
    spec = CommandSet.collect(COMMAND_MODULES).get(inv.name) if inv else None
    return inv is not None and spec is not None and inv.flags <= spec.flags


def active_alerts(bot: BotProcess) -> list[tuple[str, str, str, str]]:
    """(kind, component, env, text) of every raised alert, read from the store itself."""
    with sqlite3.connect(bot.dir / "var" / "deploybot.sqlite3") as db:
        return db.execute(
            "SELECT kind, component, env, text FROM alerts WHERE raised_at IS NOT NULL"
        ).fetchall()


async def check_steps(page: Any) -> int:
    """Every cell that needs attention (no deploy running in it) names its next step, a
    command the bot takes as typed; returns how many."""
    cells = page.locator("td.cell")
    checked = 0
    for i in range(await cells.count()):
        cell = cells.nth(i)
        state = (await cell.get_attribute("class") or "").split()
        if "s-ok" in state or "s-deploying" in state:
            continue
        command = await cell.locator(".next code.cmd").inner_text()
        assert accepted(command), command
        assert "next: " + command in await cell.locator(".next").inner_text()
        checked += 1
    return checked


async def check_alerts(page: Any, bot: BotProcess, at_least: int = 1) -> None:
    """Each raised alert (as the store has it) shows once, whole, in its cell; nothing cut."""
    deadline = time.monotonic() + 15
    while True:  # the monitors may raise one between the page's answer and this read
        alerts = active_alerts(bot)
        board = " ".join((await page.locator("#board").inner_text()).split())
        if len(alerts) >= at_least and all(" ".join(a[3].split()) in board for a in alerts):
            break
        assert time.monotonic() < deadline, (alerts, board)
        await page.reload()
    for kind, component, env, full in alerts:
        shown = page.locator(f"#cell-{component}-{env} .alert")
        texts = [" ".join(t.split()) for t in await shown.all_inner_texts()]
        assert f"ALERT {kind}: {' '.join(full.split())}" in texts, texts
        assert board.count(" ".join(full.split())) == 1, full  # not in banner or row too
    for text in await page.locator(".alert, .banner").all_inner_texts():
        assert "…" not in text, text


async def check_board(page: Any, bot: BotProcess, review: re.Match[str]) -> None:
    """The steps and alerts as above; the review waits in its cell: who asked, what, the
    command that confirms it and until when (as the review's own line said)."""
    assert await check_steps(page) >= 2  # the review in tools, jobs-api's undeployed release
    jobs = page.locator("#cell-jobs-api-tools .next code.cmd")
    assert await jobs.inner_text() == "!promote jobs-api to tools"  # toolsbeta runs 0.0.412
    cell = page.locator("#cell-builds-api-tools")
    text = " ".join((await cell.inner_text()).split())
    me, rid, version, until = getpass.getuser(), review["id"], review["version"], review["until"]
    assert f"review #{rid} waits: {me} asked to apply builds-api" in text, text
    # chat said it short, `0.0.134 (43712340)`; the page names the full version
    assert re.search(rf"→ {re.escape(version)}-\d{{14}}-{review['sha']} in tools", text), text
    assert f"next: !apply builds-api tools confirm (another deployer than {me}" in text, text
    assert f"until {until})" in text, text
    await check_alerts(page, bot)


async def check_narrow(page: Any, name: str) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.reload()
    width, client = await page.evaluate(NO_SIDE_SCROLL)
    assert width <= client, (name, width, client)
    await screenshot(page, name)
    await page.set_viewport_size({"width": 1280, "height": 800})


async def test_the_board_names_next_steps_keeps_a_review_and_the_chart_reads(
    tmp_path: Path,
) -> None:
    require_chromium()
    bot = await console_bot(tmp_path)
    await bot.start(stdin=True)
    try:
        await say(bot, "!deploy builds-api latest", r"deploy #1 done")
        await say(bot, "!rollback builds-api toolsbeta", r"deploy #2 done: rollback")
        await say(bot, "!deploy builds-api latest", r"deploy #3 done")
        await say(bot, "!promote builds-api to tools", r"pushed \w+ to main")
        review = await say(
            bot, "!apply builds-api tools",
            r"review #(?P<id>\d+): builds-api .+? -> (?P<version>0\.0\.\d+) \((?P<sha>[0-9a-f]{8})\)"
            r" in tools .*"
            r"until (?P<until>\d\d:\d\d UTC)",
        )  # fmt: skip
        async with chromium() as browser:
            page = await browser.open_page(bot.url + "/status")
            await page.locator("#live", has_text="live").wait_for(timeout=5000)
            await check_board(page, bot, review)
            assert f"review #{review['id']}:" in await page.locator("#news").inner_text()
            await screenshot(page, "board-review.png")
            await check_narrow(page, "board-390.png")
            await page.goto(bot.url + "/components/builds-api")
            boxes = await page.evaluate(BBOXES)
            labels = [b["text"] for b in boxes]
            assert "0.0.134" in labels and not any(t.startswith("#") for t in labels), labels
            for box in boxes:  # the layout's width budget holds for the font really drawn
                if re.match(r"\d+\.\d+\.\d+", box["text"]):
                    assert box["w"] <= len(box["text"]) * CHAR_W, box
            view = await page.locator("svg").get_attribute("viewBox")
            _, _, vw, vh = (float(v) for v in (view or "").split())
            for i, a in enumerate(boxes):
                assert a["x"] >= 0 and a["y"] >= 0, a  # nothing cut at an edge
                assert a["x"] + a["w"] <= vw and a["y"] + a["h"] <= vh, a
                for b in boxes[i + 1 :]:
                    apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                             or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])  # fmt: skip
                    assert apart, (a, b)
            assert "deploy #3" in await page.locator("table.sal").inner_text()
            await screenshot(page, "history.png")
            await check_narrow(page, "history-390.png")
            browser.assert_clean()
            for path in ("/components/nope", "/no/such/page"):  # (the console logs each 404)
                answer = await page.goto(bot.url + path)
                assert answer is not None and answer.status == 404
                assert await page.locator("header.top nav a[href='/sal']").count() == 1
                assert "Not found" in await page.locator("main").inner_text()
            await screenshot(page, "notfound.png")
        await bot.stop()
        # the same store, a new process: the review still waits in its cell, and what was
        # announced before is listed
        again = BotProcess(bot.dir, bot.config)
        await again.start(stdin=True)
        try:
            async with chromium() as browser:
                page = await browser.open_page(again.url + "/status")
                await check_board(page, again, review)
                news = await page.locator("#news").inner_text()
                assert f"review #{review['id']}:" in news and "deploy #3 done" in news, news
                # main moves on (another component's pin): a confirm would now be refused,
                # so the cell stops offering it and names the new review instead
                await say(again, "!promote jobs-api to tools", r"pushed \w+ to main")
                await page.reload()
                cell = page.locator("#cell-builds-api-tools")
                await cell.locator(".review", has_text="is out of date").wait_for(timeout=10000)
                assert "the pin moved since: main@" in await cell.inner_text()
                assert await cell.locator(".next code.cmd").inner_text() == (
                    "!apply builds-api tools"
                )
                await check_steps(page)
                browser.assert_clean()
        finally:
            await again.stop()
    finally:
        await bot.stop()
