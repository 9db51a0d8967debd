"""Config validation: every error with its YAML path; the example config is valid."""

import os
import subprocess
from pathlib import Path

import pytest

from bot.config.model import ConfigError, load_config, parse_config
from bot.core.text import duration_seconds
from tests.support.real import deploybot

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "config" / "deploybot.example.yaml")
    assert cfg.env_names == ["toolsbeta", "tools"]
    assert cfg.components["logging"].pins[1].key == "alloy.chartVersion"
    assert cfg.components["builds-api"].pins[0].file == "components/{component}/values/{env}.yaml"


def test_every_broken_path_is_reported() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "components": {"builds-api": {"pins": [{"file": "x.yaml", "key": None}]}},
                "environments": [{"name": "tools", "auto_apply": "sometimes"}],
                "gitlab": {"url": "https://gitlab.example", "token": "glpat-secret"},
                "http": {"listen": "nowhere"},
                "sal": {"sinks": ["store", {"jsonl": "a", "irc_channel": "#b"}]},
            }
        )
    lines = err.value.errors
    text = "\n".join(lines)
    assert "components.builds-api.pins[0].key: input should be a valid string" in lines
    assert any(line.startswith("environments[0].auto_apply:") for line in lines)
    assert "gitlab: inline secret 'token' is not allowed; use token_env or token_file" in lines
    assert any(line.startswith("http.listen:") for line in lines)
    assert any(line.startswith("sal.sinks[1]:") for line in lines)
    assert "glpat-secret" not in text


def test_unknown_keys_and_references() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"environments": [{"name": "tools", "requires": "toolsbeta"}], "bogus": 1})
    assert "bogus: unknown key" in err.value.errors
    with pytest.raises(ConfigError) as err:
        parse_config({"environments": [{"name": "tools", "requires": "toolsbeta"}]})
    assert len(err.value.errors) == 1
    assert err.value.errors[0].startswith(
        "environments[0].requires: unknown environment 'toolsbeta'"
    )


def test_hostmask_identities_need_explicit_trust() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"auth": {"rules": [{"who": ["irc-host:*!*@x"], "role": "admin"}]}})
    assert err.value.errors[0].startswith("auth.rules[0]: ")


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*deploybot(), "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "X": "a-secret"},  # the secrets the test configs name are set
    )


def test_check_config_cli_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IRC_PASSWORD", "XMPP_PASSWORD", "GITLAB_TOKEN", "WEBHOOK_SECRET"):
        monkeypatch.setenv(f"DEPLOYBOT_{name}", "set-for-the-check")  # the example names them
    ok = _check_config(ROOT / "config" / "deploybot.example.yaml")
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "components:\n  builds-api:\n    pins:\n      - {file: x.yaml}\n      - {key: 3}\n"
        "environments:\n  - {kube_context: tools}\n"
    )
    bad = _check_config(broken)
    assert bad.returncode == 2
    assert "components.builds-api.pins[1].key: input should be a valid string" in bad.stderr
    assert "environments[0].name: field required" in bad.stderr
    not_yaml = tmp_path / "bad.yaml"
    not_yaml.write_text("bot: [unclosed\n")
    res = _check_config(not_yaml)
    assert res.returncode == 2 and "not valid YAML" in res.stderr


def test_check_config_refuses_rooms_no_chat_connection_serves(tmp_path: Path) -> None:
    config = tmp_path / "xmpp-only.yaml"
    config.write_text(
        "chat:\n"
        "  default_room: ops@conference.example.org\n"
        "  xmpp: {jid: bot@example.org, password_env: X, rooms: [ops@conference.example.org]}\n"
        "components:\n"
        "  builds-api: {room: '#toolforge-deploy'}\n"
        "  jobs-api: {room: ops@conference.example.org}\n"
    )
    res = _check_config(config)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "components.builds-api.room: '#toolforge-deploy' is not served by any chat connection"
        " (list it in chat.irc.channels or chat.xmpp.rooms)"
    ]
    # served once a connection lists it (room JIDs compare case-insensitively)
    config.write_text(
        config.read_text().replace("'#toolforge-deploy'", "OPS@conference.example.org")
    )
    assert _check_config(config).returncode == 0


def test_chat_keepalive_defaults_notice_a_frozen_server_within_40s() -> None:
    cfg = parse_config(
        {
            "chat": {
                "default_room": "#ops",
                "irc": {"host": "irc.example.org", "channels": ["#ops"]},
                "xmpp": {"jid": "bot@example.org", "password_env": "X"},
            }
        }
    )
    for chat in (cfg.chat.irc, cfg.chat.xmpp):
        assert chat is not None
        assert (chat.ping_interval, chat.ping_timeout) == (30.0, 10.0)
        assert chat.ping_interval + chat.ping_timeout <= 40


def test_review_timeout_is_a_duration() -> None:
    ok = parse_config(
        {"environments": [{"name": "tools", "review": True, "review_timeout": "15m"}]}
    )
    assert duration_seconds(ok.environments[0].review_timeout) == 900
    with pytest.raises(ConfigError) as err:
        parse_config({"environments": [{"name": "tools", "review_timeout": "soon"}]})
    assert err.value.errors == [
        "environments[0].review_timeout: expected a duration like 15m, 90s, 1h or 30d, not 'soon'"
    ]


def test_store_and_leader_election_settings_are_checked() -> None:
    assert parse_config({}).store_url.endswith("var/deploybot.sqlite3")
    pg = {"url": "postgresql://deploybot@db:5432/deploybot", "password_env": "PGPASS"}
    config = parse_config({"store": pg, "leader_election": {"backend": "postgres"}})
    assert config.leader_election is not None and config.leader_election.lease_seconds == 15
    with pytest.raises(ConfigError) as err:
        parse_config({"store": {"url": "postgresql://deploybot:hunter2@db/deploybot"}})
    assert err.value.errors == [
        "store.url: inline password in the url; use store.password_env or _file"
    ]
    with pytest.raises(ConfigError) as err:
        parse_config({"leader_election": {"backend": "kubernetes"}})
    assert err.value.errors == [
        "leader_election: replicas need a shared store; set store.url to postgresql://"
    ]
