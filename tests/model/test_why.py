"""One named regression test per case under "Why" of issue 21 ("One truth"), on the demo's
real git repos (plain-git control repo, component repos with CI-format release tags) and
live files, through the real app's console, as a user types them.

The demo: builds-api releases 0.0.131..0.0.134; toolsbeta pins 0.0.133 and runs 0.0.132;
tools pins and runs 0.0.132. jobs-api: tools pins and runs 0.0.411, toolsbeta 0.0.412."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import yaml

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.cluster.runner import RunResult
from bot.config.model import Config, load_config
from bot.core.git import git
from bot.deploy.steps import Steps
from bot.store.alerts import Alert, AlertStore
from tests.support.session import console_session
from tests.support.shown import said, shown

# 0.0.134 everywhere: the state most of the cases start from
EVERYWHERE = ["!deploy builds-api latest", "!promote builds-api", "!apply builds-api tools"]


def answers(lines: list[str]) -> list[str]:
    """The replies (no announcements, no "working on it" a loaded machine may add)."""
    return [x for x in lines if not x.startswith("[#") and not x.endswith("working on it…")]


def releases(config_path: Path, component: str = "builds-api") -> list[str]:
    out = subprocess.run(
        ["git", "tag", "--list"], cwd=config_path.parent / "git" / f"{component}.git",
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return sorted(out, key=lambda t: int(t.split(".")[2].split("-")[0]))


def pin_on_main(config_path: Path, env: str, component: str = "builds-api") -> str:
    text = subprocess.run(
        ["git", "show", f"main:components/{component}/values/{env}.yaml"],
        cwd=config_path.parent / "git" / "toolforge-deploy.git",
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return text.split("chartVersion:", 1)[1].split()[0]


def live(config: Config, env: str) -> dict[str, str]:
    cfg = config.env(env)
    assert cfg is not None and cfg.live_file
    return dict(yaml.safe_load(Path(cfg.live_file).read_text()))


async def session_then_alerts(config: Config, lines: list[str]) -> tuple[list[str], list[Alert]]:
    """The lines as `console:tester`, then one monitor check; what was said and the alerts."""
    stdin, stdout = io.StringIO("".join(x + "\n" for x in lines)), io.StringIO()
    app = App(config, console=ConsoleAdapter(stdin, stdout, user="tester"))
    await app.start()
    try:
        assert app.console is not None
        await app.console.finished.wait()
        await app.monitors.check_now()
        alerts = await AlertStore(app.services.store).active()
    finally:
        await app.stop()
    return stdout.getvalue().splitlines(), alerts


async def test_where_an_older_release_inside_what_runs_advises_no_downgrade(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: `!where builds-api a0185ab7` (0.0.133, inside 0.0.134 that runs everywhere) said
    "step 2 of 5 … next: !deploy builds-api a0185ab7"."""
    r133 = releases(demo_config_path)[-2]
    sha = r133.rsplit("-", 1)[1]
    lines = answers(await console_session(demo_config, [*EVERYWHERE, f"!where builds-api {sha}"]))
    where = next(i for i, x in enumerate(lines) if x.startswith(f"builds-api {shown(r133)}: "))
    assert "step 5 of 5" in lines[where], lines[where]
    assert "runs in (contained in what runs): toolsbeta, tools" in lines[where + 1]
    assert "next:" not in lines[where] + lines[where + 1]


async def test_deploy_to_an_ancestor_of_what_runs_is_a_downgrade(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: `!deploy builds-api a0185ab7 to tools` pinned production back with no word."""
    r133 = releases(demo_config_path)[-2]
    sha = r133.rsplit("-", 1)[1]
    lines = answers(
        await console_session(demo_config, [*EVERYWHERE, f"!deploy builds-api {sha} to tools"])
    )
    assert lines[-1] == (
        f"deploy: {shown(r133)} is older than the {shown(releases(demo_config_path)[-1])} that"
        f" tools runs: a downgrade; to go back: !rollback builds-api tools to {r133} (or add"
        " --force to"
        " pin it anyway); nothing changed"
    )
    assert pin_on_main(demo_config_path, "tools") == releases(demo_config_path)[-1]


async def test_apply_when_the_environment_runs_its_pin_is_nothing_to_apply(
    demo_config: Config,
) -> None:
    """Was: `!apply jobs-api tools` (tools runs its pin) was refused with advice to put an
    older release on staging."""
    before = live(demo_config, "tools")
    lines = answers(await console_session(demo_config, ["!apply jobs-api tools", "!sal 1"]))
    assert lines[0] == f"nothing to apply: tools already runs {shown(before['jobs-api'])}"
    assert "apply" not in lines[1]  # no SAL entry: nothing was deployed or refused
    assert live(demo_config, "tools") == before


async def test_apply_when_live_equals_the_pin_runs_no_deploy(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: "0.0.134 -> 0.0.134 … apply done" after a deploy that changed nothing."""
    latest = releases(demo_config_path)[-1]
    lines = answers(
        await console_session(demo_config, [*EVERYWHERE, "!apply builds-api tools", "!sal 20"])
    )
    assert f"nothing to apply: tools already runs {shown(latest)}" in lines
    assert not [x for x in lines if f"{shown(latest)} -> {shown(latest)}" in x]


async def test_promote_when_pinned_but_not_running_names_apply(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: "already at 0.0.134 in tools; nothing changed", and no next command."""
    latest = releases(demo_config_path)[-1]
    lines = answers(
        await console_session(
            demo_config,
            ["!deploy builds-api latest", "!promote builds-api", "!promote builds-api to tools"],
        )
    )
    assert lines[-1] == (
        f"builds-api is already at {shown(latest)} in tools; nothing changed · tools pins"
        f" {shown(latest)}, runs {shown(releases(demo_config_path)[-3])}; next: !apply"
        " builds-api tools"
    )


async def test_diff_going_back_takes_back_the_commits(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: `!diff builds-api previous tools` (0.0.134 -> 0.0.132) "brings no commits"."""
    tags = releases(demo_config_path)
    lines = answers(
        await console_session(demo_config, [*EVERYWHERE, "!diff builds-api previous tools"])
    )
    i = next(i for i, x in enumerate(lines) if x.startswith("builds-api: would change 1 file"))
    assert f"tools: {shown(tags[-1])} -> {shown(tags[-3])}" in lines[i]
    assert lines[i + 1].startswith("takes back 2 commits: 43712340") or re.match(
        r"takes back 2 commits: [0-9a-f]{8} builds-api: change 134", lines[i + 1]
    ), lines[i + 1]


async def test_after_the_pin_went_back_a_live_newer_release_is_not_undeployed(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: "undeployed: newest 0.0.134 not deployed to tools" while 0.0.134 was live; and
    the drift alert then advised applying the older pin."""
    tags = releases(demo_config_path)
    said, alerts = await session_then_alerts(
        demo_config, [*EVERYWHERE, f"!deploy builds-api {tags[-3]} to tools --force"]
    )
    assert pin_on_main(demo_config_path, "tools") == tags[-3]
    assert live(demo_config, "tools")["builds-api"] == tags[-1]
    mine = {(a.kind, a.env): a.text for a in alerts if a.component == "builds-api"}
    assert ("undeployed", "tools") not in mine, mine
    drift = mine[("drift", "tools")]
    assert drift.endswith(f"next: !deploy builds-api {tags[-1]} to tools"), drift


async def test_deploy_without_to_leaves_production_pinned_and_raises_no_drift(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: `!deploy builds-api latest` pinned production in the same commit, then the bot
    raised a drift alert about its own commit."""
    before = pin_on_main(demo_config_path, "tools")
    _, alerts = await session_then_alerts(demo_config, ["!deploy builds-api latest"])
    assert pin_on_main(demo_config_path, "toolsbeta") == releases(demo_config_path)[-1]
    assert pin_on_main(demo_config_path, "tools") == before
    assert not [
        a for a in alerts if (a.kind, a.component, a.env) == ("drift", "builds-api", "tools")
    ]


async def test_status_without_a_cluster_says_health_is_unknown(demo_config_path: Path) -> None:
    """Was: "all 9 component+environment pairs healthy" with nothing known about health."""
    data = yaml.safe_load(demo_config_path.read_text())
    for env in data["environments"]:
        env.pop("live_file", None)
    data["monitors"] = {"enabled": False}
    demo_config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    lines = answers(await console_session(load_config(demo_config_path), ["!status"]))
    assert "healthy" not in lines[-1].replace("health unknown", "")
    assert "4 health unknown (no cluster configured)" in lines[-1], lines


def test_a_diff_that_changed_but_was_not_read_never_says_zero() -> None:
    """Was: helmfile exit code 2 with unparsable output became "0 resources changed"."""
    result = RunResult(("helmfile", "diff"), 2, 0.1, (), "something helmfile printed\n")
    summary = Steps.diff_summary(result, "http://bot/deploys/1/log")
    assert summary == "changes (see the diff: http://bot/deploys/1/log)"


async def test_a_six_character_prefix_resolves(demo_config: Config, demo_config_path: Path) -> None:
    """Was: `!deploy builds-api abc123` refused ("a commit sha (7-40 hex)")."""
    latest = releases(demo_config_path)[-1]
    six = latest.rsplit("-", 1)[1][:6]
    lines = answers(await console_session(demo_config, [f"!deploy builds-api {six} to toolsbeta"]))
    assert lines[0].startswith("builds-api 0.0.133 (") and lines[0].endswith(
        f"-> {shown(latest)} in toolsbeta"
    ), lines


async def test_upgrade_scripts_are_counted_from_the_previous_pin_when_what_runs_is_unknown(
    demo_config_path: Path, tmp_path: Path
) -> None:
    """Was: no script named when the running version was unknown, although the bump line
    of the same command said "0.0.132 -> 0.0.134"."""
    data = yaml.safe_load(demo_config_path.read_text())
    for env in data["environments"]:
        if env["name"] == "tools":  # no live state and no requires: only the pins speak
            env.pop("live_file", None)
            env.pop("requires", None)
    data["monitors"] = {"enabled": False}
    demo_config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    control = demo_config_path.parent / "git" / "toolforge-deploy.git"
    work = tmp_path / "work"
    await git("clone", "-q", str(control), str(work))
    (work / "components" / "builds-api" / "0.0.134-migrate.sh").write_text("#!/bin/sh\n")
    await git("add", "-A", cwd=work)
    await git("commit", "-qm", "a script", cwd=work)
    await git("push", "-q", "origin", "HEAD:main", cwd=work)
    tags = releases(demo_config_path)
    out = await console_session(
        load_config(demo_config_path),
        ["!deploy builds-api latest to tools", "!apply builds-api tools"],
    )
    review = next(x for x in said(out) if x.startswith("review #1: "))  # said in its room
    assert "upgrade scripts crossed (named above)" in review, review
    # the scripts have their own line, said before the review's
    named = next(x for x in out if "deploy #1 of builds-api" in x and "upgrade scripts" in x)
    assert "components/builds-api/0.0.134-migrate.sh" in named, named
    assert f"(what runs is unknown: counted from the previous pin {shown(tags[-3])})" in named


async def test_deploy_without_to_pins_no_environment_it_cannot_apply_now(
    demo_config_path: Path,
) -> None:
    """Was: with production auto-applying too, `!deploy c X` (no `to`) while toolsbeta pinned
    X but ran an older release moved production's pin to X, and its auto-apply was then
    refused by `requires`: a pin changed and not applied, which the bot itself then called
    drift. Now production is left alone, saying why; once toolsbeta takes the release in the
    same command, production follows it."""
    data = yaml.safe_load(demo_config_path.read_text())
    for env in data["environments"]:
        env["auto_apply"] = True  # tools too (it still requires toolsbeta)
    demo_config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(demo_config_path)
    r133, r134 = releases(demo_config_path)[-2:]
    assert pin_on_main(demo_config_path, "toolsbeta") == r133  # the demo: pinned, not running
    assert live(config, "toolsbeta")["builds-api"] != r133

    lines = answers(await console_session(config, [f"!deploy builds-api {r133.rsplit('-', 1)[1]}"]))
    assert pin_on_main(demo_config_path, "tools") != r133
    assert any(
        f"tools not pinned: it requires toolsbeta, which does not run {shown(r133)}" in x
        for x in lines
    ), lines
    assert not any("refused" in x for x in lines), lines

    lines = answers(await console_session(config, ["!deploy builds-api latest"]))
    assert pin_on_main(demo_config_path, "tools") == r134
    assert live(config, "toolsbeta")["builds-api"] == r134
    assert live(config, "tools")["builds-api"] == r134, lines


async def test_a_forced_downgrade_says_which_commits_it_takes_back(
    demo_config: Config, demo_config_path: Path
) -> None:
    """Was: `!deploy builds-api <0.0.132> to toolsbeta --force` while toolsbeta ran 0.0.133
    announced "brings no commits (… built from the same code)": the commit went away."""
    tags = releases(demo_config_path)
    r132, r133 = tags[-3], tags[-2]
    lines = await console_session(
        demo_config,
        ["!apply builds-api toolsbeta", f"!deploy builds-api {r132} to toolsbeta --force"],
    )
    told = [x for x in lines if "deploy #2 brings" in x or "deploy #2 takes back" in x]
    assert told == [
        f"[#toolforge-deploy] deploy #2 takes back 1 commit: {r133.rsplit('-', 1)[1]}"
        " builds-api: change 133 (Demo Dev)"
    ], lines
    assert live(demo_config, "toolsbeta")["builds-api"] == r132
