"""Hostile or careless chat input: invalid UTF-8 on the console, `!log` tagged to a component
the user may not deploy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.config.model import Config
from tests.support.real import deploybot
from tests.support.session import console_session, free_port

pytestmark = pytest.mark.faults


def test_invalid_utf8_on_the_console_is_text_not_an_internal_error(tmp_path: Path) -> None:
    session = b"!log caf\xe9 restarted \xff\xfe pods\n!sal 1\n!whoami\n"
    for encoding in ("utf-8", "latin-1"):  # PYTHONIOENCODING as in a UTF-8 and a C locale
        res = subprocess.run(
            [*deploybot(), "demo", "--dir", str(tmp_path / encoding),
             "--listen", f"127.0.0.1:{free_port()}"],
            input=session, capture_output=True, timeout=120,
            env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": encoding},
        )  # fmt: skip
        assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
        out = res.stdout.decode("utf-8", "replace")
        assert "internal error" not in out
        assert "logged #1 " in out and "restarted" in out
        assert "you are console:" in out


async def test_log_tagged_to_a_component_needs_the_role_on_that_component(
    demo_config: Config,
) -> None:
    rules = [{"who": ["console:*"], "role": "deployer", "components": ["builds-api"]}]
    restricted = demo_config.model_copy(
        update={"auth": demo_config.auth.model_validate({"rules": rules})}
    )
    out = await console_session(
        restricted,
        ["!log jobs-api restarted pods", "!log builds-api restarted pods", "!sal jobs-api"],
    )
    replies = [line for line in out if not line.startswith("[#")]  # not the monitors' alerts
    assert replies[0] == "log: refused: you need the deployer role for jobs-api; see !whoami"
    assert replies[1].startswith("logged #")
    # jobs-api's SAL holds the refusal, never the message itself
    assert all("restarted pods" not in line for line in replies[2:]), replies
