"""Who may do what: roles granted by `auth.rules` to verified identities.

Pure decisions over plain values. An identity is a string `irc:<account>`,
`irc-host:<nick!user@host>`, `xmpp:<bare jid>` or `console:<os user>`. Hostmask identities
only match rules that say `trust: hostmask`; a bare nick is never an identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from fnmatch import fnmatchcase

from bot.config.model import AuthRule


class Role(IntEnum):
    anyone = 0
    deployer = 1
    admin = 2

    def __str__(self) -> str:
        return self.name


ANY = None  # "on any component/environment"


@dataclass(frozen=True)
class Grant:
    role: Role
    components: tuple[str, ...]
    environments: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.role} on {','.join(self.components)}/{','.join(self.environments)}"


def _rule_matches_identity(rule: AuthRule, identities: tuple[str, ...]) -> bool:
    for ident in identities:
        kind = ident.partition(":")[0]
        if kind == "irc-host" and rule.trust != "hostmask":
            continue
        for who in rule.who:
            if who.partition(":")[0] != kind:
                continue
            # identities compare case-insensitively (IRC accounts, JIDs)
            if fnmatchcase(ident.lower(), who.lower()):
                return True
    return False


def grants(rules: list[AuthRule], identities: tuple[str, ...]) -> list[Grant]:
    """The rules that apply to these identities, as grants."""
    return [
        Grant(Role[r.role], tuple(r.components), tuple(r.environments))
        for r in rules
        if _rule_matches_identity(r, identities)
    ]


def _glob_hit(patterns: tuple[str, ...], value: str | None) -> bool:
    if value is None:
        return True
    return any(fnmatchcase(value, p) for p in patterns)


def role_for(
    rules: list[AuthRule],
    identities: tuple[str, ...],
    component: str | None = ANY,
    env: str | None = ANY,
) -> Role:
    """The highest role these identities hold for component/env.

    `None` for component or env means "on any": a deployer of builds-api only is a deployer
    for commands that name no component (such as `!log`).
    """
    best = Role.anyone
    for g in grants(rules, identities):
        if _glob_hit(g.components, component) and _glob_hit(g.environments, env):
            best = max(best, g.role)
    return best


def person_of(people: Mapping[str, list[str]], identity: str) -> str:
    """The person acting as `identity`: two-person rules, lock owners and "own" checks
    compare these, never identity strings.

    A `people:` entry listing the identity (globs allowed) makes it `person:<name>`, so one
    person on IRC, XMPP and the console is one person. Otherwise the identity itself,
    case-folded (`console:ALICE` is `console:alice`); a hostmask is its `user@host` (what a
    `trust: hostmask` rule matched), so a nick change does not make another person.
    """
    ident = identity.lower()
    kind = ident.partition(":")[0]
    for name, whos in people.items():
        for who in whos:
            if who.partition(":")[0] == kind and fnmatchcase(ident, who.lower()):
                return f"person:{name.lower()}"
    if kind == "irc-host" and "!" in ident:
        return "irc-host:" + ident.partition("!")[2]
    return ident


def same_person(people: Mapping[str, list[str]], a: str, b: str) -> bool:
    return person_of(people, a) == person_of(people, b)


def refusal(needed: Role, component: str | None, env: str | None) -> str:
    """One line telling the user what they lack."""
    where = ""
    if component:
        where = f" for {component}" + (f" in {env}" if env else "")
    elif env:
        where = f" in {env}"
    return f"you need the {needed} role{where}; see !whoami"
