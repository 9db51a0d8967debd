"""One meaning of "step k of n": an environment counts only when it runs the version (live
state when known). `!deploy`/`!promote` into a manual environment name `!apply`, and
`!where` and `!status` give the same step for the same version (console, demo repos)."""

from __future__ import annotations

import re

from bot.config.model import Config
from tests.support.session import console_session
from tests.support.shown import replies


def step_of(line: str) -> str:
    m = re.search(r"step (\d)(?: of |/)(\d)", line)
    assert m is not None, line
    return f"{m.group(1)}/{m.group(2)}"


async def test_pin_in_manual_env_is_not_progress_and_names_apply(demo_config: Config) -> None:
    lines = replies(
        await console_session(
            demo_config,
            [
                "!deploy builds-api latest to tools",
                "!where builds-api latest",
                "!status builds-api tools",
            ],
        )  # fmt: skip
    )
    # tools requires toolsbeta, which does not run it: the next step is there (planner's
    # rule 1: never a command the bot will then refuse), and the gate is named
    pinned = lines[1]
    first = re.search(r"!deploy builds-api (0\.0\.134-\S+) to toolsbeta", pinned)
    assert first is not None, pinned
    step = f"— {first.group(0)} (requires: tools applies only what toolsbeta runs)"
    assert pinned.startswith("pushed ") and "step 3 of 5 (bump committed)" in pinned
    assert pinned.endswith(f"pinned in tools, not applied {step}")
    where = lines[2]
    assert where.endswith(f"pinned in tools, not applied {step}")
    status = lines[4]
    assert status.startswith("builds-api tools: live 0.0.132 (")
    assert status.endswith(
        f"next: {first.group(0)} (requires: tools applies only what toolsbeta runs)"
    )
    assert step_of(pinned) == step_of(where) == step_of(status) == "3/5"


async def test_promote_into_manual_env_names_apply_and_counts_what_runs(
    demo_config: Config,
) -> None:
    lines = replies(
        await console_session(
            demo_config,
            [
                "!deploy builds-api latest to toolsbeta",
                "!promote builds-api",
                "!where builds-api latest",
                "!status builds-api toolsbeta",
            ],
        )  # fmt: skip
    )
    promoted = [x for x in lines if x.startswith("pushed ")][-1]
    assert "step 4 of 5 (live in toolsbeta); next: live in tools" in promoted
    assert promoted.endswith("pinned in tools, not applied — !apply builds-api tools")
    where = next(x for x in lines if x.startswith("builds-api 0.0.134 ("))
    status = next(x for x in lines if x.startswith("builds-api toolsbeta: "))
    assert step_of(where) == step_of(status) == "4/5"
    assert "ALERT: drift" not in status  # toolsbeta runs its pin now


async def test_promote_pins_what_the_required_env_runs_not_its_pin(demo_config: Config) -> None:
    # the demo starts with toolsbeta pinning 0.0.133 but running 0.0.132 (its live file):
    # `!promote` pins tools to what toolsbeta runs, which tools already pins; pinning the
    # 0.0.133 toolsbeta does not run made the very next `!apply builds-api tools` a refusal
    lines = replies(
        await console_session(demo_config, ["!promote builds-api", "!apply builds-api tools"])
    )
    assert lines[0] == "builds-api is already at 0.0.132 (a1890dc3) in tools; nothing changed"
    assert not any("refused" in x for x in lines), lines


async def test_diff_of_a_pin_not_applied_yet_names_apply(demo_config: Config) -> None:
    # tools pinned to 0.0.134 but not applied: `!diff` said only "already at 0.0.134 in tools;
    # nothing to change", as if tools ran it, while `!status` says it runs 0.0.132
    lines = replies(
        await console_session(
            demo_config,
            ["!deploy builds-api latest", "!promote builds-api", "!diff builds-api latest tools"],
        )  # fmt: skip
    )
    assert lines[-1] == (
        "builds-api is already at 0.0.134 (43712340) in tools; nothing to change"
        " · tools pins 0.0.134 (43712340), runs 0.0.132 (a1890dc3); next: !apply builds-api tools"
    )
