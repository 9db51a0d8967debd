"""The pages over HTTP: what `check-config` allows for `http.auth`, a proxy's identity header
checked against `auth.rules`, escaping and task links in the SAL, the CSP, and `/diffs/<id>`
with the releases a change brings. (What a person sees in a browser: test_pages_browser.)"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from tests.support.real import deploybot
from tests.support.session import free_port
from tests.support.webhookbot import RunningBot, config_with

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def pages_bot(demo_config_path: Path) -> RunningBot:
    """The demo's bot with its pages open on a free loopback port."""
    return RunningBot(config_with(demo_config_path, http={"listen": f"127.0.0.1:{free_port()}"}))


def check_config(
    tmp_path: Path, demo_config_path: Path, http: dict[str, object]
) -> tuple[int, str]:
    data = yaml.safe_load(demo_config_path.read_text())
    data["http"] = http
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(data))
    res = subprocess.run(
        [*deploybot(), "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DEPLOYBOT_HTTP_TOKEN": "a-token-from-a-secret"},
    )  # fmt: skip
    return res.returncode, res.stdout + res.stderr


def test_check_config_refuses_open_pages_off_loopback(
    tmp_path: Path, demo_config_path: Path
) -> None:
    code, out = check_config(tmp_path, demo_config_path, {"listen": "0.0.0.0:8080"})
    assert code == 2
    assert out.strip() == (
        "http: auth: none is only allowed when listen is on loopback, not 0.0.0.0;"
        " set http.auth.token_env or http.auth.trusted_header"
    )
    code, out = check_config(
        tmp_path, demo_config_path,
        {"listen": "0.0.0.0:8080", "auth": {"token_env": "DEPLOYBOT_HTTP_TOKEN"}},
    )  # fmt: skip
    assert code == 0, out
    code, out = check_config(tmp_path, demo_config_path, {"listen": "[::1]:8080"})
    assert code == 0, out
    code, out = check_config(tmp_path, demo_config_path, {"auth": {}})
    assert code == 2 and "give token_env (or token_file) or trusted_header" in out


async def test_a_trusted_header_is_checked_against_auth_rules(demo_config_path: Path) -> None:
    config = config_with(
        demo_config_path,
        http={"listen": f"127.0.0.1:{free_port()}", "auth": {"trusted_header": "X-Forwarded-User"},
              "trusted_proxies": ["127.0.0.1"]},
        auth={"rules": [{"who": ["console:*"], "role": "admin"},
                        {"who": ["http:*@example.org"], "role": "anyone"}]},
    )  # fmt: skip
    async with RunningBot(config) as bot:
        assert bot.session is not None
        get = bot.session.get
        async with get(
            bot.base + "/status", headers={**HTML, "X-Forwarded-User": "ana@example.org"}
        ) as r:
            assert r.status == 200 and 'data-component="builds-api"' in await r.text()
        for who in ({"X-Forwarded-User": "eve@evil.example"}, {}):
            async with get(bot.base + "/status", headers={**HTML, **who}) as r:
                assert r.status == 403
                assert (
                    "X-Forwarded-User header is missing, not from http.trusted_proxies, or"
                    in await r.text()
                )
        async with get(bot.base + "/events", headers={"X-Forwarded-User": "eve@evil.example"}) as r:
            assert r.status == 403
        status, _ = await bot.post(b'{"object_kind": "note"}', kind="Note Hook", token=None)
        assert status == 200  # webhooks are not behind the page check
        async with get(bot.base + "/healthz") as r:
            assert r.status == 200


async def test_sal_page_escapes_links_tasks_and_filters(demo_config_path: Path) -> None:
    async with pages_bot(demo_config_path) as bot:
        assert bot.session is not None
        bot.say("!log <script>alert(1)</script> restarted builds T123")
        await bot.wait_line(r"^logged #1")
        async with bot.session.get(bot.base + "/sal", headers=HTML) as r:
            page = await r.text()
            csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script>alert" not in page
        assert '<a href="https://phabricator.wikimedia.org/T123">T123</a>' in page
        async with bot.session.get(bot.base + "/sal?actor=nobody", headers=HTML) as r:
            assert "no entries match" in await r.text()
        async with bot.session.get(bot.base + "/sal?since=yesterday", headers=HTML) as r:
            assert "since &#39;yesterday&#39;: expected e.g. 2026-11-01" in await r.text()
        async with bot.session.get(bot.base + "/sal") as r:  # curl: still plain text
            assert r.content_type == "text/plain"
            assert "<script>alert(1)</script> restarted builds T123" in await r.text()


async def test_diff_page_shows_what_moves_and_the_releases_it_brings(
    demo_config_path: Path,
) -> None:
    async with pages_bot(demo_config_path) as bot:
        assert bot.session is not None
        bot.say("!diff builds-api latest toolsbeta")
        line = await bot.wait_line(r"full diff: ")
        url = bot.base + "/diffs/" + line.split("/diffs/")[1].strip()
        async with bot.session.get(url, headers=HTML) as r:
            page = await r.text()
        heading = re.search(r"<h2>builds-api in toolsbeta: (\S+) → (\S+)</h2>", page)
        assert heading is not None, page
        old, new = heading.groups()
        assert old.startswith("0.0.133-") and new.startswith("0.0.134-")
        assert "1 release this change brings:" in page and f"<code>{new}</code>" in page
        assert f'<span class="d-add">+chartVersion: {new}</span>' in page
        assert "No deploy has run this change yet" in page
        async with bot.session.get(url) as r:
            assert r.content_type == "text/plain" and f"+chartVersion: {new}" in await r.text()


async def test_a_missing_page_has_the_navigation_and_curl_gets_one_line(
    demo_config_path: Path,
) -> None:
    async with pages_bot(demo_config_path) as bot:
        assert bot.session is not None
        get = bot.session.get
        for path, why in (("/components/nope", "no component &#39;nope&#39;"),
                          ("/deploys/999", "no such deploy #999"),
                          ("/no/such/<page>", "nothing at /no/such/&lt;page&gt;")):  # fmt: skip
            async with get(bot.base + path, headers=HTML) as r:
                page = await r.text()
                assert r.status == 404 and r.content_type == "text/html", path
                assert '<a href="/status">board</a>' in page and '<a href="/sal">SAL</a>' in page
                assert why in page, page
                assert "<page>" not in page  # escaped
            async with get(bot.base + path) as r:  # curl: the one text line
                assert r.status == 404 and r.content_type == "text/plain"
                assert "<a href" not in await r.text()
        async with get(bot.base + "/static/nope.css", headers=HTML) as r:
            assert r.status == 404 and r.content_type != "text/html"
