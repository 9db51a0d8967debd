"""Gates by direction, not by command name (issue 21, security): a move forward into an
environment passes `requires` and `review` whichever command asks for it; `!rollback` only
goes back; `--emergency` (admin) is the one way past them, and the SAL says so. On the
demo's real git repos and live files, through the real app's console."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from bot.config.model import Config, load_config
from tests.support.session import console_session
from tests.support.shown import replies, said


def reviewed(path: Path, env: str = "tools") -> Config:
    """The demo's config with `review: true` on `env` (a hand-edited config)."""
    data = yaml.safe_load(path.read_text())
    for e in data["environments"]:
        if e["name"] == env:
            e["review"] = True
    data["monitors"] = {"enabled": False}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def releases(path: Path, component: str = "builds-api") -> list[str]:
    """The component's release tags in the demo's repository, oldest first."""
    out = subprocess.run(
        ["git", "tag", "--list"], cwd=path.parent / "git" / f"{component}.git",
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return sorted(out, key=lambda t: int(t.split(".")[2].split("-")[0]))


def live(config: Config, env: str) -> dict[str, str]:
    cfg = config.env(env)
    assert cfg is not None and cfg.live_file
    return dict(yaml.safe_load(Path(cfg.live_file).read_text()))


async def test_rollback_to_latest_is_refused_in_a_review_environment(
    demo_config_path: Path,
) -> None:
    """Was: `!rollback jobs-api tools to latest` moved production forward past review."""
    config = reviewed(demo_config_path)
    before = live(config, "tools")
    lines = replies(await console_session(config, ["!rollback jobs-api tools to latest"]))
    assert len(lines) == 1
    assert lines[0].startswith("rollback: refused: 0.0.412 (")
    assert "is not older than what tools runs, so this is not a rollback" in lines[0]
    assert "!deploy jobs-api 0.0.412-" in lines[0] and lines[0].endswith("nothing changed")
    assert live(config, "tools") == before  # nothing moved


async def test_rollback_forward_past_requires_is_refused(demo_config: Config) -> None:
    """builds-api: toolsbeta runs 0.0.132, so 0.0.134 never ran there."""
    before = live(demo_config, "tools")
    lines = replies(
        await console_session(demo_config, ["!rollback builds-api tools to latest", "!sal 1"])
    )
    assert "this is not a rollback" in lines[0] and "!deploy builds-api 0.0.134-" in lines[0]
    assert "refused" in lines[1]  # the refusal is in the SAL
    assert live(demo_config, "tools") == before


async def test_forward_apply_into_review_env_waits_for_a_second_person(
    demo_config_path: Path,
) -> None:
    config = reviewed(demo_config_path, "toolsbeta")
    lines = said(await console_session(config, ["!apply builds-api toolsbeta"]))
    assert lines[-1].startswith("review #1: builds-api 0.0.132 (")
    assert "nothing applied; another deployer confirms" in lines[-1]
    assert live(config, "toolsbeta")["builds-api"].startswith("0.0.132-")


async def test_rollback_back_in_review_env_needs_no_review(demo_config_path: Path) -> None:
    """Going back is never held up: no review, no requires."""
    config = reviewed(demo_config_path)
    oldest = releases(demo_config_path)[0]
    lines = said(await console_session(config, [f"!rollback builds-api tools to {oldest}"]))
    assert "done: rollback of builds-api in tools from 0.0.132 (" in lines[-1], lines
    assert live(config, "tools")["builds-api"].startswith("0.0.131-")


async def test_emergency_forward_skips_the_gates_and_the_sal_says_so(
    demo_config_path: Path,
) -> None:
    config = reviewed(demo_config_path)
    lines = replies(
        await console_session(
            config, ["!rollback builds-api tools --emergency", "!sal builds-api tools 3"]
        )
    )
    sal = "\n".join(lines)
    assert "emergency: window, requires and review not checked" in sal


def pin(config: Config, env: str, component: str = "builds-api") -> str:
    """The version main pins for component in env (read from the control repo itself)."""
    assert config.control_repo is not None and config.control_repo.url
    control = Path(config.control_repo.url.removeprefix("file://"))
    text = subprocess.run(
        ["git", "show", f"main:components/{component}/values/{env}.yaml"],
        cwd=control, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return text.split("chartVersion:", 1)[1].split()[0]


async def test_rollback_of_a_pin_ahead_of_what_runs_puts_the_pin_back(
    demo_config: Config,
) -> None:
    """Was: tools pinned ahead (promoted, not applied), and `!rollback builds-api tools to
    <what runs>` said "tools already runs it; nothing to roll back", leaving the pin ahead;
    after the pin was put back, `!rollback` offered the never-applied pin as `previous` and
    advised a move forward ("not older than what tools runs … !deploy"), and `!diff … previous`
    named that pin too."""
    runs = live(demo_config, "tools")["builds-api"]
    sha = runs.rsplit("-", 1)[1]
    lines = replies(
        await console_session(
            demo_config,
            ["!deploy builds-api latest", "!promote builds-api",
             f"!rollback builds-api tools to {sha}", "!rollback builds-api tools",
             "!diff builds-api previous tools"],
        )
    )  # fmt: skip
    put_back = f"-> 0.0.132 ({sha}) in tools"
    assert any(x.startswith("builds-api 0.0.134 (") and x.endswith(put_back) for x in lines), lines
    assert lines[-2:] == [
        "rollback: no previous version known for this component and environment;"
        " name one: !rollback builds-api tools to <ref>; nothing changed",
        # every command means by `previous` what `!rollback` does
        "diff: no previous version known for this component and environment",
    ], lines
    assert pin(demo_config, "tools") == runs  # the pin is back on what runs
    assert live(demo_config, "tools")["builds-api"] == runs  # and nothing was applied


async def test_plain_rollback_of_a_pin_ahead_puts_it_back_on_what_runs(demo_config: Config) -> None:
    """Was: the demo's toolsbeta pins 0.0.133 but runs 0.0.132 (never pinned there), and a
    plain `!rollback builds-api toolsbeta` said "no previous version known … name one":
    `previous` of a pin ahead of what runs is what runs (README), so the pin goes back."""
    runs = live(demo_config, "toolsbeta")["builds-api"]
    lines = replies(await console_session(demo_config, ["!rollback builds-api toolsbeta"]))
    assert lines[0].startswith("builds-api 0.0.133 ("), lines
    assert lines[0].endswith(f"-> 0.0.132 ({runs.rsplit('-', 1)[1]}) in toolsbeta"), lines
    assert pin(demo_config, "toolsbeta") == runs  # the pin is back on what runs
    assert live(demo_config, "toolsbeta")["builds-api"] == runs  # and nothing was applied


async def test_promote_of_an_older_release_than_what_runs_is_a_downgrade(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: 0.0.134 in both, toolsbeta rolled back to 0.0.132, and `!promote builds-api`
    moved tools' pin back to 0.0.132 under the 0.0.134 it runs ("step 5 of 5"), a drift
    the bot made itself; a step back is `!rollback`'s, which the refusal names."""
    lines = replies(
        await console_session(
            demo_config,
            ["!deploy builds-api latest", "!promote builds-api", "!apply builds-api tools",
             "!rollback builds-api toolsbeta", "!promote builds-api"],
        )
    )  # fmt: skip
    old = releases(demo_config_path)
    assert lines[-1] == (
        "promote: 0.0.132 (a1890dc3) is older than the 0.0.134 (43712340) that tools runs:"
        f" a downgrade; to go back: !rollback builds-api tools to {old[1]}; nothing changed"
    )
    assert pin(demo_config, "tools") == live(demo_config, "tools")["builds-api"] == old[-1]


async def test_where_names_the_lock_that_holds_the_deploy_it_advises(demo_config: Config) -> None:
    # alice locks toolsbeta; `!where` and the undeployed alert advised tester a plain
    # `!deploy … to toolsbeta`, which the lock then refused: the advice names the lock now
    await console_session(demo_config, ["!lock builds-api toolsbeta fixing things"], user="alice")
    lines = replies(await console_session(demo_config, ["!where builds-api latest"]))
    advised = lines[-1].split("next: ", 1)[1]
    lock = r"lock: builds-api locked in toolsbeta by console:alice since \S+: fixing things"
    assert re.fullmatch(rf"!deploy builds-api 0\.0\.134-\S+ to toolsbeta \({lock}\)", advised)


async def test_advice_into_a_frozen_env_names_the_freeze(demo_config: Config) -> None:
    # `!status` and `!where` advised a plain `!apply`/`!deploy … to toolsbeta` during a freeze
    # there, which the freeze then refused: the advice names it as the gate it is
    lines = replies(
        await console_session(
            demo_config,
            [
                "!freeze toolsbeta 2h testing",
                "!status builds-api toolsbeta",
                "!where builds-api latest",
                "!apply builds-api toolsbeta",
            ],
        )  # fmt: skip
    )
    freeze = r"\(freeze: freeze #1 of toolsbeta until [^)]+ by tester: testing\)"
    status = next(x for x in lines if x.startswith("builds-api toolsbeta: "))
    assert re.search(rf"next: !apply builds-api toolsbeta {freeze}$", status), status
    assert re.search(rf"next: !deploy builds-api 0\.0\.134-\S+ to toolsbeta {freeze}$", lines[-2])
    assert lines[-1].startswith("apply: refused: toolsbeta is frozen: freeze #1 of toolsbeta")
