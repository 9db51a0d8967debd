"""The pages in a real Chromium against the real bot (`deploybot run` over the demo's data):
what a person sees on the board, a webhook changing an open page, a deploy's log streaming,
and pages refusing a visitor without the token while webhooks still work.

Screenshots of the board and of a deploy page are taken on the way (`make screenshots` saves them to docs/screenshots/ for the README).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot.demo.setup import prepare
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
