"""Canary secrets with surrounding whitespace never reach chat or the log.

A token with a trailing newline (the common Kubernetes Secret mistake) or a trailing space
used to be registered for redaction with the whitespace, while servers echo it back without:
the echo then leaked. The GitLab here answers every request with a 500 whose body quotes the
request headers, as some proxies do.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from bot.config.model import parse_config
from tests.support.session import console_session, free_port

pytestmark = pytest.mark.faults

CANARY = "glpat-CANARY0123456789xyz"


@pytest.fixture
async def echoing_gitlab() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        headers = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
        return web.Response(status=500, text=f"upstream error; request headers: {headers}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("padding", ["\n", " \t"], ids=["newline", "space-tab"])
async def test_canary_token_with_whitespace_leaks_nowhere(
    demo_config_path: Path,
    echoing_gitlab: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    padding: str,
) -> None:
    monkeypatch.setenv("DEPLOYBOT_GITLAB_TOKEN", CANARY + padding)
    data = yaml.safe_load(demo_config_path.read_text())
    data["monitors"] = {"enabled": False}
    data["gitlab"] = {"url": echoing_gitlab, "token_env": "DEPLOYBOT_GITLAB_TOKEN"}
    for comp in data["components"].values():  # the components now live on that GitLab
        comp["project"] = f"tools/{comp.pop('repo_url').rsplit('/', 1)[-1]}"
    config = parse_config(data)
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(caplog.handler)  # the app's redacting filter sits on the root handlers
    try:
        out = await console_session(
            config, ["!where builds-api 322f874b", "!where jobs-api latest", "!status builds-api"]
        )
    finally:
        root.removeHandler(caplog.handler)
    chat = "\n".join(out)
    logged = "\n".join(
        caplog.handler.format(r) for r in caplog.records
    )  # message and traceback, as a log file would show them
    assert out, "the commands answered"
    assert CANARY not in chat
    assert CANARY not in logged
    assert "environment variable DEPLOYBOT_GITLAB_TOKEN has surrounding whitespace" in logged
