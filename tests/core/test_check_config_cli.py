"""`deploybot check-config` as a user runs it (a subprocess): ranges, required pin keys,
errors at their YAML path, the nearest key for a typo, unreadable secrets, an empty file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.real import deploybot

CONFIG = """\
deploy:
  timeout: -5
  timeot: 10
environments:
  - name: toolsbeta
  - name: tools
    requires: toolsbta
components:
  builds-api:
    projcet: x/y
    pins:
      - file: components/builds-api/values/{env}.yaml
"""

SECRETS = """\
chat:
  default_room: "#ops"
  irc:
    host: 127.0.0.1
    channels: ["#ops"]
    sasl: {username: bot, password_env: DEPLOYBOT_CHECK_UNSET}
gitlab:
  url: https://gitlab.example.org
  token_file: /nonexistent/token
"""


def check(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DEPLOYBOT_CHECK_UNSET"}
    return subprocess.run(
        [*deploybot(), "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_every_error_at_its_path_with_the_nearest_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(CONFIG)
    res = check(cfg)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert "deploy.timeout: input should be greater than 0" in lines
    assert "deploy.timeot: unknown key; did you mean timeout?" in lines
    assert "components.builds-api.projcet: unknown key; did you mean project?" in lines
    assert "components.builds-api.pins[0].key: field required" in lines
    assert not any(line.startswith("(top level)") for line in lines)


def test_a_requires_typo_is_reported_at_its_path(tmp_path: Path) -> None:
    cfg = tmp_path / "requires.yaml"
    cfg.write_text("environments:\n  - name: toolsbeta\n  - name: tools\n    requires: toolsbta\n")
    res = check(cfg)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "environments[1].requires: unknown environment 'toolsbta'; did you mean toolsbeta?"
    ]


def test_unreadable_secrets_and_an_empty_file_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "secrets.yaml"
    cfg.write_text(SECRETS)
    res = check(cfg)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "chat.irc.sasl.password_env: DEPLOYBOT_CHECK_UNSET is not set",
        "gitlab.token_file: cannot read /nonexistent/token (No such file or directory)",
    ]
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n")
    res = check(empty)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"{empty}: the file is empty; start from config/deploybot.example.yaml"
    )
