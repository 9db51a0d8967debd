"""The SAL model, as users see it in `!sal` and the JSONL sink: one entry per state change
of an action, each carrying the action's id and task ids; every refusal of a mutating
command is one entry, whoever asked, kept in the store only; a lock's owner may deploy
through their own lock (console sessions over the demo's repos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bot.config.model import Config, parse_config
from bot.core.redact import Redactor
from bot.store.db import Store
from bot.store.sal import Sal, SalEntry
from tests.support.session import console_session


def config_for(path: Path) -> Config:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["monitors"] = {"enabled": False}
    data["auth"] = {
        "rules": [
            {"who": ["console:alice"], "role": "admin"},
            {"who": ["console:bob"], "role": "deployer", "environments": ["toolsbeta"]},
        ]
    }
    return parse_config(data)


async def entries(config: Config) -> list[SalEntry]:
    store = Store(config.bot.state_dir / "deploybot.sqlite3")
    await store.open()
    try:
        return list(reversed(await Sal(store, [], Redactor()).query(limit=100)))
    finally:
        await store.close()


async def test_one_entry_per_state_change_sharing_the_action_id(demo_config_path: Path) -> None:
    config = config_for(demo_config_path)
    await console_session(config, ["!deploy builds-api latest to toolsbeta T42"], "alice")
    sal = await entries(config)
    assert [(e.action, e.result) for e in sal] == [
        ("bump", "pushed"), ("auto-apply", "started"), ("auto-apply", "done"),
    ]  # fmt: skip
    assert len({e.action_id for e in sal}) == 1 and sal[0].action_id
    assert all(e.tasks == ["T42"] for e in sal)

    await console_session(config, ["!log second action"], "alice")
    assert (await entries(config))[-1].action_id != sal[0].action_id


async def test_refusals_are_logged_for_everyone_once_and_stay_in_the_store(
    demo_config_path: Path,
) -> None:
    config = config_for(demo_config_path)
    await console_session(config, ["!lock builds-api toolsbeta db migration"], "alice")
    await console_session(config, ["!deploy builds-api latest"], "carol")  # no role at all
    bob = await console_session(
        config, ["!apply builds-api tools", "!deploy builds-api latest to toolsbeta"], "bob"
    )
    assert (
        bob[0] == "apply: refused: you need the deployer role for builds-api in tools; see !whoami"
    )
    assert bob[1].startswith("deploy: refused: builds-api locked in toolsbeta by console:alice")
    owner = await console_session(config, ["!deploy builds-api latest to toolsbeta"], "alice")
    assert any(line.startswith("pushed ") for line in owner)  # through her own lock

    sal = await entries(config)
    refused = [(e.actor, e.action, e.env) for e in sal if e.result == "refused"]
    assert refused == [
        ("console:carol", "deploy", None),
        ("console:bob", "apply", "tools"),
        ("console:bob", "deploy", "toolsbeta"),
    ]
    sink = config.bot.state_dir / "sal.jsonl"
    broadcast = [json.loads(line) for line in sink.read_text().splitlines()]
    assert broadcast and not [e for e in broadcast if e["result"] == "refused"]
