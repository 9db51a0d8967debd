"""Every example a command declares (and `!help` shows) works on the demo data."""

from __future__ import annotations

import re

import pytest

from bot.app import COMMAND_MODULES
from bot.config.model import Config
from commands.spec import CommandSet
from tests.support.session import console_session

EXAMPLES = [
    (spec.name, ex.text, ex.expect)
    for spec in CommandSet.collect(COMMAND_MODULES).specs.values()
    for ex in spec.examples
]


def test_every_command_declares_an_example() -> None:
    specs = CommandSet.collect(COMMAND_MODULES).specs.values()
    assert [s.name for s in specs if not s.examples] == []


@pytest.mark.parametrize("name,text,expect", EXAMPLES, ids=[e[1] for e in EXAMPLES])
async def test_declared_example(demo_config: Config, name: str, text: str, expect: str) -> None:
    out = await console_session(demo_config, [text])
    assert out, f"{text!r} got no reply"
    joined = "\n".join(out)
    assert re.search(expect, joined), f"{text!r} replied {joined!r}, expected /{expect}/"
    assert not joined.startswith(f"{name}: internal error")


async def test_help_lists_every_command_and_unknown_gets_a_suggestion(demo_config: Config) -> None:
    out = await console_session(demo_config, ["!help", "!stauts", "!help dploy", "!frobnicate"])
    for spec in CommandSet.collect(COMMAND_MODULES).specs:
        assert spec in out[0]
    assert out[1] == "unknown command !stauts; did you mean !status?"
    assert out[2].startswith("no command 'dploy'")
    assert out[3] == "unknown command !frobnicate; try !help"


async def test_refusal_names_the_role(demo_config: Config) -> None:
    restricted = demo_config.model_copy(
        update={"auth": demo_config.auth.model_copy(update={"rules": []})}
    )
    out = await console_session(restricted, ["!log hello", "!whoami"])
    assert out[0] == "log: refused: you need the deployer role; see !whoami"
    assert out[1] == "you are console:tester; roles: anyone"
