"""The web surface trusts no one by default: a forged proxy header from elsewhere, a cookie
after logout or expiry, guessing tokens at /login, a `next` that leaves the site, and a
cross-site `text/plain` webhook are all refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest

from bot.web.access import COOKIE
from tests.support.session import free_port
from tests.support.webhookbot import RunningBot, config_with

TOKEN = "page-token-0123456789abcdef"
HTML = {"Accept": "text/html"}


async def test_a_forged_trusted_header_from_a_peer_that_is_not_the_proxy(
    demo_config_path: Path,
) -> None:
    config = config_with(
        demo_config_path,
        http={"listen": f"127.0.0.1:{free_port()}", "trusted_proxies": ["10.64.0.0/16"],
              "auth": {"trusted_header": "X-Forwarded-User"}},
        auth={"rules": [{"who": ["console:*", "http:viewer"], "role": "anyone"}]},
    )  # fmt: skip
    async with RunningBot(config) as bot, aiohttp.ClientSession() as http:
        async with http.get(bot.base + "/sal", headers={"X-Forwarded-User": "viewer"}) as r:
            assert r.status == 403  # 127.0.0.1 is not a trusted proxy


@pytest.fixture
def token_config(demo_config_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DEPLOYBOT_TEST_PAGE_TOKEN", TOKEN)
    return config_with(
        demo_config_path,
        http={
            "listen": f"127.0.0.1:{free_port()}",
            "auth": {"token_env": "DEPLOYBOT_TEST_PAGE_TOKEN"},
        },
    )


async def _login(
    http: aiohttp.ClientSession, base: str, token: str, nxt: str = "/sal"
) -> aiohttp.ClientResponse:
    return await http.post(
        base + "/login", data={"token": token, "next": nxt}, allow_redirects=False
    )


async def test_a_cookie_is_worthless_after_logout_and_after_expiry(token_config) -> None:  # type: ignore[no-untyped-def]
    async with RunningBot(token_config) as bot, aiohttp.ClientSession() as http:
        first = await _login(http, bot.base, TOKEN)
        second = await _login(http, bot.base, TOKEN)
        one, two = first.cookies[COOKIE].value, second.cookies[COOKIE].value
        assert one != two and TOKEN not in one  # random per session, not derived from the token
        for cookie in (one, two):
            async with http.get(bot.base + "/sal", cookies={COOKIE: cookie}) as r:
                assert r.status == 200
        async with http.post(
            bot.base + "/logout", cookies={COOKIE: one}, allow_redirects=False
        ) as r:
            assert r.status == 303
        async with http.get(bot.base + "/sal", cookies={COOKIE: one}) as r:
            assert r.status == 401
        # the server's session table says when a session ends: let this one end now
        sessions = _access(bot)._sessions
        sessions[two] = time.time() - 1
        async with http.get(bot.base + "/sal", cookies={COOKIE: two}) as r:
            assert r.status == 401


def _access(bot: RunningBot):  # type: ignore[no-untyped-def]
    from bot.web.access import ACCESS

    runner = bot.app._runner
    assert runner is not None
    return runner.app[ACCESS]


async def test_login_is_throttled(token_config) -> None:  # type: ignore[no-untyped-def]
    async with RunningBot(token_config) as bot, aiohttp.ClientSession() as http:
        for _ in range(5):
            r = await _login(http, bot.base, "wrong")
            assert r.status == 200 and "wrong token" in await r.text()
        r = await _login(http, bot.base, TOKEN)  # even the right one waits now
        assert r.status == 429 and int(r.headers["Retry-After"]) > 0
        assert COOKIE not in r.cookies


async def test_next_leaving_the_site_is_refused(token_config) -> None:  # type: ignore[no-untyped-def]
    async with RunningBot(token_config) as bot, aiohttp.ClientSession() as http:
        for evil in (
            "/\t/evil.example",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
        ):
            r = await _login(http, bot.base, TOKEN, nxt=evil)
            assert r.status == 303 and r.headers["Location"] == "/status", evil
        async with http.get(bot.base + "/login?next=/%09/evil.example", headers=HTML) as r:
            assert "evil.example" not in await r.text()


async def test_a_cross_site_text_plain_webhook_is_refused(demo_config_path: Path) -> None:
    config = config_with(demo_config_path, http={"listen": f"127.0.0.1:{free_port()}"})
    body = (Path(__file__).parents[2] / "config/demo/payloads/mr_merged.json").read_bytes()
    async with RunningBot(config) as bot, aiohttp.ClientSession() as http:
        # what a browser's form or fetch(mode: no-cors) can send: no custom header, text/plain
        async with http.post(bot.base + "/webhooks/gitlab", data=body,
                             headers={"Content-Type": "text/plain"}) as r:  # fmt: skip
            assert r.status == 400
        async with http.post(bot.base + "/webhooks/gitlab", data=body, headers={
            "Content-Type": "text/plain", "X-Gitlab-Event": "Merge Request Hook"}) as r:  # fmt: skip
            assert r.status == 415
        assert await bot.events() == []
        json.loads(body)  # the body itself was a valid merged-MR event


async def test_the_session_cookie_is_secure_when_the_trusted_proxy_says_https(
    demo_config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYBOT_TEST_PAGE_TOKEN", TOKEN)
    config = config_with(
        demo_config_path,
        http={"listen": f"127.0.0.1:{free_port()}", "trusted_proxies": ["127.0.0.0/8"],
              "auth": {"token_env": "DEPLOYBOT_TEST_PAGE_TOKEN"}},
    )  # fmt: skip
    async with RunningBot(config) as bot, aiohttp.ClientSession() as http:
        async with http.post(bot.base + "/login", data={"token": TOKEN, "next": "/sal"},
                             headers={"X-Forwarded-Proto": "https"}, allow_redirects=False) as r:  # fmt: skip
            assert "Secure" in r.headers["Set-Cookie"]
        r = await _login(http, bot.base, TOKEN)
        assert "Secure" not in r.headers["Set-Cookie"]  # plain http from the proxy


async def test_pages_listen_serves_the_pages_and_listen_only_the_webhook(
    demo_config_path: Path,
) -> None:
    pages = f"127.0.0.1:{free_port()}"
    config = config_with(
        demo_config_path, http={"listen": f"127.0.0.1:{free_port()}", "pages_listen": pages}
    )
    body = (Path(__file__).parents[2] / "config/demo/payloads/pipeline_running.json").read_bytes()
    async with RunningBot(config) as bot, aiohttp.ClientSession() as http:
        async with http.get(bot.base + "/sal") as r:
            assert r.status == 404
        async with http.get(f"http://{pages}/sal") as r:
            assert r.status == 200
        for base, status in ((f"http://{pages}", 404), (bot.base, 200)):
            async with http.post(base + "/webhooks/gitlab", data=body, headers={
                "Content-Type": "application/json", "X-Gitlab-Event": "Pipeline Hook"}) as r:  # fmt: skip
                assert r.status == status
        for base in (bot.base, f"http://{pages}"):
            async with http.get(base + "/healthz") as r:
                assert r.status == 200


async def test_a_pod_log_page_needs_the_role_logs_needs(token_config) -> None:  # type: ignore[no-untyped-def]
    async with RunningBot(token_config) as bot, aiohttp.ClientSession() as http:
        diffs = bot.app.services.diffs
        logs = await diffs.save("== pod builds-api-1\npanic\n", gate=("builds-api", "tools"))
        plain = await diffs.save("+chartVersion: 2\n")
        auth = {"Authorization": f"Bearer {TOKEN}"}  # a page reader, no rule for http:token
        for url, status in ((logs, 403), (plain, 200)):
            path = "/diffs/" + url.rsplit("/", 1)[1]
            for accept in ("text/plain", "text/html"):
                async with http.get(bot.base + path, headers={**auth, "Accept": accept}) as r:
                    assert r.status == status, (path, accept)
                    assert "panic" not in await r.text()
