"""Role decisions from auth.rules: accounts, hostmasks, globs."""

from bot.config.auth import Role, role_for
from bot.config.model import AuthRule

RULES = [
    AuthRule(who=["irc:taavi", "xmpp:taavi@example.org"], role="deployer"),
    AuthRule(who=["irc:op1"], role="deployer", components=["builds-*"], environments=["toolsbeta"]),
    AuthRule(who=["irc:root*"], role="admin"),
    AuthRule(who=["irc-host:*!*@wikimedia/bd808"], role="deployer", trust="hostmask"),
]


def test_account_identity_gets_its_role() -> None:
    assert role_for(RULES, ("irc:taavi", "irc-host:x!y@z"), "builds-api", "tools") == Role.deployer
    assert role_for(RULES, ("xmpp:taavi@example.org",)) == Role.deployer


def test_bare_nick_hostmask_without_account_is_anyone() -> None:
    assert role_for(RULES, ("irc-host:taavi!~t@203.0.113.9",), "builds-api", "tools") == Role.anyone


def test_component_and_environment_globs_limit_the_grant() -> None:
    ids = ("irc:op1",)
    assert role_for(RULES, ids, "builds-api", "toolsbeta") == Role.deployer
    assert role_for(RULES, ids, "builds-api", "tools") == Role.anyone
    assert role_for(RULES, ids, "jobs-api", "toolsbeta") == Role.anyone
    assert role_for(RULES, ids) == Role.deployer  # "on any": e.g. !log


def test_hostmask_rule_needs_trust_and_matches() -> None:
    assert role_for(RULES, ("irc-host:bd808!~bd@wikimedia/bd808",), "x", "y") == Role.deployer


def test_highest_role_wins_and_identity_case_is_ignored() -> None:
    assert role_for(RULES, ("irc:RootUser",), "x", "y") == Role.admin
