"""Secrets stay out of every output: the 11 pod-log canaries on the `!logs` page (and in the
file behind it), the page token written into `!log`, and the plain `/diffs/<id>` view."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bot.app import App
from tests.support.canaries import CANARIES, POD_LOG
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.fakes.kube import pod_json
from tests.support.session import free_port
from tests.support.webhookbot import RunningBot, config_with

__all__ = ["bed"]


@pytest.mark.parametrize("line", list(CANARIES))
def test_each_canary_shape_is_masked(line: str) -> None:
    from bot.core.shapes import scrub

    out = scrub(line)
    assert CANARIES[line] not in out and "[redacted]" in out, out


def test_what_is_not_a_secret_stays() -> None:
    from bot.core.shapes import scrub

    text = (
        "+chartVersion: 0.0.134-20261107230700-43712340\nAuthor: Alice <alice@example.org>\n"
        "Comparing release=builds-api, chart=toolforge/builds-api\ncommit 98f89941abcdef0123"
    )
    assert scrub(text) == text


async def test_the_logs_page_and_its_file_hold_none_of_the_11_canaries(bed: DeployBed) -> None:
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=bed.pins["toolsbeta"])
    crash = pod_json(NS, "builds-api-crash", None, "harbor.example.org/x:y",
                     waiting={"reason": "CrashLoopBackOff", "message": "back-off"}, restarts=2)  # fmt: skip
    bed.kube.add_pod(NS, crash)
    bed.kube.set_pod_log(NS, "builds-api-crash", POD_LOG)
    pages: list[str] = []

    async def fetch(app: App) -> None:
        assert app.console is not None
        said = app.console.stdout.getvalue().splitlines()
        url = next(line for line in said if line.startswith("logs of ")).rsplit(" ", 1)[1]
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            pages.append(await resp.text())

    await bed.run(["!logs builds-api toolsbeta"], inspect=fetch)
    assert "panic: cannot reach the database" in pages[0]
    stored = "".join(p.read_text() for p in (bed.config.bot.state_dir / "diffs").glob("*.diff"))
    for value in CANARIES.values():
        assert value not in pages[0] and value not in stored, value


async def test_the_page_token_written_into_log_is_redacted(
    demo_config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "pagetoken-5f3c9a71e2"
    monkeypatch.setenv("DEPLOYBOT_TEST_PAGE_TOKEN", token)
    config = config_with(
        demo_config_path,
        http={"listen": f"127.0.0.1:{free_port()}", "auth": {"token_env": "DEPLOYBOT_TEST_PAGE_TOKEN"}},
    )  # fmt: skip
    async with RunningBot(config) as bot:
        bot.say(f"!log oops, the page token is {token}")
        line = await bot.wait_line(r"^logged #1")
        assert token not in line
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {token}"}
            async with http.get(bot.base + "/sal", headers=auth) as r:
                assert r.status == 200 and token not in await r.text()
    assert token not in (config.bot.state_dir / "deploybot.sqlite3").read_bytes().decode("latin-1")


async def test_the_plain_diff_view_and_its_file_are_redacted(demo_config_path: Path) -> None:
    config = config_with(demo_config_path, http={"listen": f"127.0.0.1:{free_port()}"})
    async with RunningBot(config) as bot:
        url = await bot.app.services.diffs.save("helm said: DB_PASSWORD=cnry12diff\n")
        path = "/diffs/" + url.rsplit("/", 1)[1]
        async with aiohttp.ClientSession() as http, http.get(bot.base + path) as r:
            text = await r.text()
    assert "cnry12diff" not in text and "DB_PASSWORD=[redacted]" in text
    files = (config.bot.state_dir / "diffs").glob("*.diff")
    assert all("cnry12diff" not in f.read_text() for f in files)
