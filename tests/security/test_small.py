"""The small findings: a component written `builds-api:` or `BUILDS-API` in `!log`, IRC colour
codes in outside text, `demo --listen 0.0.0.0`, booleans and strings as config numbers, and
`http.listen: 8080`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bot.config.model import ConfigError, parse_config
from tests.support.real import deploybot
from tests.support.session import console_session, free_port
from tests.support.webhookbot import RunningBot, config_with


@pytest.mark.parametrize("line", ["!log builds-api: restarted", "!log BUILDS-API restarted"])
async def test_log_naming_a_component_in_any_spelling_needs_the_role_there(
    demo_config_path: Path, line: str
) -> None:
    config = config_with(
        demo_config_path, http={"listen": f"127.0.0.1:{free_port()}"},
        auth={"rules": [{"who": ["console:dave"], "role": "deployer", "components": ["jobs-api"]}]},
    )  # fmt: skip
    out = await console_session(config, [line], user="dave")
    assert out == ["log: refused: you need the deployer role for builds-api; see !whoami"]


async def test_irc_colour_codes_in_a_commit_title_do_not_reach_chat(
    demo_config_path: Path,
) -> None:
    config = config_with(demo_config_path, http={"listen": f"127.0.0.1:{free_port()}"})
    body = json.loads(
        (Path(__file__).parents[2] / "config/demo/payloads/pipeline_running.json").read_text()
    )
    body["builds"] = [b | {"status": "created"} for b in body["builds"]]
    body["object_attributes"]["status"] = "running"
    body["commit"]["title"] = "\x0304,01\x02PWNED\x0f fix \x1fthings\x16"
    async with RunningBot(config) as bot:
        status, _ = await bot.post(body, token=None)
        assert status == 200
        line = await bot.wait_line(r"fix things")
    assert "PWNED fix things" in line
    assert not any(ord(c) < 0x20 for c in line), repr(line)


def test_demo_listen_off_loopback_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = subprocess.run(
        [*deploybot(), "demo", "--dir", str(tmp_path / "d"),
         "--listen", "0.0.0.0:8081"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stdout == "" and len(res.stderr.splitlines()) == 1, res.stderr
    assert res.stderr.startswith("deploybot demo: --listen 0.0.0.0:8081: ")
    assert not (tmp_path / "d").exists()  # nothing made


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"deploy": {"timeout": True}}, "deploy.timeout: expected a number, not the boolean true"),
        ({"deploy": {"timeout": "30"}}, "deploy.timeout: expected a number, not the string '30'"),
        (
            {"http": {"listen": 8080}},
            "http.listen: expected HOST:PORT (e.g. 127.0.0.1:8080), not 8080",
        ),
    ],
)
def test_config_numbers_are_numbers_and_listen_is_host_port(
    data: dict[str, object], error: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert exc.value.errors == [error]


def test_a_public_listen_needs_a_webhook_secret_or_says_unsigned_is_meant() -> None:
    public = {"listen": "0.0.0.0:8080", "auth": {"token_env": "T"}}
    with pytest.raises(ConfigError) as exc:
        parse_config({"http": public, "gitlab": {"url": "https://gitlab.example.org"}})
    assert exc.value.errors[0].startswith("gitlab.webhook_secret_env: http.listen 0.0.0.0:8080")
    parse_config({"http": public, "gitlab": {"url": "https://gitlab.example.org",
                                             "allow_unsigned_webhooks": True}})  # fmt: skip
    parse_config({"http": public, "gitlab": {"url": "https://gitlab.example.org",
                                             "webhook_secret_env": "S"}})  # fmt: skip
