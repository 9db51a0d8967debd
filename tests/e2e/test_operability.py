"""What an operator sees of `deploybot run`: JSON logs, metrics after a deploy, the schema."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from bot.config.model import load_config
from tests.support.real import deploybot


async def _metrics_with(base: str, name: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(base + "/metrics") as r:
                    text = await r.text()
                if name in text:
                    return text
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{name} never appeared in /metrics:\n{text[-2000:]}")


async def test_json_logs_and_metrics_after_a_demo_deploy(demo_config_path: Path) -> None:
    listen = load_config(demo_config_path).http.listen
    proc = await asyncio.create_subprocess_exec(
        *deploybot(), "run", "-c", str(demo_config_path),
        "--log-format", "json", "-v",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"!apply builds-api toolsbeta\n")
        await proc.stdin.drain()
        text = await _metrics_with(f"http://{listen}", "deploybot_deploy_duration_seconds_bucket")
    finally:
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert 'deploybot_build_info{version="' in text
    assert "process_resident_memory_bytes" in text
    assert 'result="done"' in text.split("deploybot_deploy_duration_seconds_bucket", 1)[1]
    assert "deploybot_webhook_ack_seconds_bucket" in text
    assert "deploybot_announcement_lag_seconds_count" in text
    logged = [line for line in err.decode().splitlines() if line.strip()]
    assert logged, "nothing was logged"
    records = [json.loads(line) for line in logged]  # every line is one JSON object
    assert all(
        isinstance(r, dict) and {"time", "level", "logger", "message"} <= set(r) for r in records
    )
    assert any(r["level"] == "DEBUG" for r in records), "-v after the subcommand had no effect"
    assert b"deploy #1 done" in out


async def test_schema_is_a_json_schema_of_the_config() -> None:
    proc = await asyncio.create_subprocess_exec(
        *deploybot(), "schema", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    schema = json.loads(out)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert {"bot", "chat", "components", "environments", "deploy"} <= set(schema["properties"])


async def test_config_comes_from_the_environment_and_bad_log_format_is_one_line(
    demo_config_path: Path,
) -> None:
    env = {"DEPLOYBOT_CONFIG": str(demo_config_path), "PATH": "/usr/bin:/bin"}
    ok = await asyncio.create_subprocess_exec(
        *deploybot(), "check-config",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, _ = await ok.communicate()
    assert ok.returncode == 0 and b": ok (" in out
    bad = await asyncio.create_subprocess_exec(
        *deploybot(), "check-config",
        stderr=asyncio.subprocess.PIPE, env={**env, "DEPLOYBOT_LOG_FORMAT": "xml"},
    )  # fmt: skip
    _, err = await bad.communicate()
    assert bad.returncode == 2
    assert err.decode().strip().splitlines() == [
        "DEPLOYBOT_LOG_FORMAT must be text or json, not 'xml'"
    ]
