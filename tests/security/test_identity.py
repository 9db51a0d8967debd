"""One identity per person: the requester cannot confirm their own review by changing the
case of their name, their IRC nick, or the network they speak on; a refused confirm leaves
the review waiting."""

from __future__ import annotations

import pytest

from bot.config.model import ConfigError, parse_config
from tests.support.deployworld import DeployBed, bed

__all__ = ["bed"]


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#") and "working on it" not in line]


async def test_own_confirm_by_a_case_variant_is_refused_and_the_review_waits(
    bed: DeployBed,
) -> None:
    env = bed.data["environments"][0]
    env.update({"review": True, "auto_apply": False})
    bed.data["auth"]["rules"].append({"who": ["console:ALICE"], "role": "admin"})
    bed.push(bed.pins["toolsbeta"])
    await bed.run(["!apply builds-api toolsbeta"])
    second = await bed.run(["!apply builds-api toolsbeta confirm"], user="ALICE")
    assert replies(second.out)[-1] == (
        "apply: refused: review #1 was requested by alice (the same person as console:ALICE);"
        " another deployer must confirm it (review_by: other)"
    )
    assert [c["sub"] for c in bed.records()] == ["diff"]  # nothing applied
    assert second.deploys[0]["state"] == "reviewed"


async def test_a_refused_confirm_leaves_the_review_pending(bed: DeployBed) -> None:
    env = bed.data["environments"][0]
    env.update({"review": True, "auto_apply": False, "review_by": "self"})
    new = bed.releases[-1]
    bed.push(bed.pins["toolsbeta"])
    bed.push(new)
    await bed.run(["!apply builds-api toolsbeta", f"!deploy builds-api {new} to toolsbeta"])
    second = await bed.run(["!apply builds-api toolsbeta confirm"])
    assert replies(second.out)[-1].startswith("apply: refused: the pin moved since the review")
    review = next(d for d in second.deploys if d["action"] == "review")
    assert review["state"] == "reviewed"  # not "confirmed": it was never applied


def test_a_nick_change_is_the_same_person_for_a_hostmask_identity() -> None:
    from bot.config.auth import same_person

    asked = "irc-host:alice!~alice@user/alice"
    assert same_person({}, asked, "irc-host:Alice!~alice@user/alice")
    assert same_person({}, asked, "irc-host:alice_away!~alice@user/alice")
    assert not same_person({}, asked, "irc-host:alice!~mallory@evil.example")


def test_the_same_person_on_xmpp_and_irc_is_one_person() -> None:
    from bot.config.auth import person_of, same_person

    config = parse_config(
        {"people": {"alice": ["irc-account:alice", "xmpp:alice@example.org", "console:alice"]}}
    )
    assert config.people["alice"][0] == "irc:alice"  # SPEC's spelling, the bot's spelling
    assert same_person(config.people, "irc:Alice", "xmpp:alice@example.org")
    assert person_of(config.people, "xmpp:ALICE@example.org") == "person:alice"
    assert not same_person(config.people, "irc:alice", "xmpp:bob@example.org")
    with pytest.raises(ConfigError, match=r"people: identity .nick:bob. must start with irc:"):
        parse_config({"people": {"bob": ["nick:bob"]}})


async def test_an_mr_approved_only_by_the_person_applying_it_is_refused(
    bed: DeployBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.core.git import git
    from tests.support.fakes.gitlab import FakeGitLab

    control, branch, token = "repos/cloud/toolforge/toolforge-deploy", "bump_builds-api", "glpat-x"
    head = await bed.main_head()
    names = (await git("ls-tree", "-r", "--name-only", head, cwd=bed.control_repo)).split()
    tree = {n: await git("show", f"{head}:{n}", cwd=bed.control_repo) for n in names}
    await git("branch", branch, head, cwd=bed.control_repo)
    new = bed.pins["toolsbeta"]
    bed.push(new)
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", token)
    async with FakeGitLab(token=token) as gl:
        gl.add_project(control, files=tree)
        gl.add_project("repos/cloud/toolforge/builds-api")
        gl.add_commit(control, branch, {}, "bump", sha=head)
        mr = gl.add_merge_request(control, branch, "main", f"builds-api: bump to {new}")
        bed.data["control_repo"] = {
            "forge": "gitlab", "project": control, "url": f"file://{bed.control_repo}",
        }  # fmt: skip
        bed.data["gitlab"] = {"url": gl.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN"}
        bed.data["people"] = {"alice": ["console:alice", "gitlab:alice.smith"]}
        bed.data["environments"][0].update(require_mr_approval=True, auto_apply=False)
        gl.approve(control, mr["iid"], "Alice.Smith")
        s = await bed.run(["!apply builds-api toolsbeta"])
    assert [line for line in s.out if line.startswith("apply: ")] == [
        f"apply: refused: bump MR !{mr['iid']} is approved only by gitlab:Alice.Smith, the"
        f" person applying it; another person must approve it ({mr['web_url']}); nothing run"
    ]
    assert bed.records() == []
