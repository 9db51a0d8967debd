"""What a deploy is: the request, the running deploy, its outcome, and how it can stop early.

Plain values shared by preflight, steps, records and the deployer; no I/O here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from bot.control.forge import OpenBump
from bot.core.errors import UserError


class Refusal(UserError):
    """A deploy that may not start; nothing was run."""


class NothingToApply(UserError):
    """What an apply would deploy runs already; nothing to do (not a refusal)."""


class DeployFailed(Exception):
    """A step failed; the message is the one-line reason."""


@dataclass
class Checked:
    """What passed, and what the user should know (`notes` go into the start line + SAL)."""

    notes: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)


class Action(StrEnum):
    """What a deploy request asks for; the value is what the SAL and the `deploys` table say."""

    APPLY = "apply"
    AUTO_APPLY = "auto-apply"
    DEPLOY = "deploy"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    EMERGENCY = "rollback-emergency"
    REVIEW = "review"  # the diff of a reviewed environment; applies nothing
    CONFIRM = "confirm"  # a second person applies a waiting review

    @property
    def is_rollback(self) -> bool:
        return self in (Action.ROLLBACK, Action.EMERGENCY)


@dataclass
class DeployRequest:
    component: str
    env: str
    actor: str
    action: Action = Action.APPLY
    tasks: tuple[str, ...] = ()
    force: bool = False  # admin override of windows / requires (the caller checks the role)
    version: str | None = None  # rollbacks: the version the deploy must end up at
    ref: str | None = None  # emergency rollbacks: `to <ref>` as typed (matched to Helm history)
    commit: str | None = None  # a confirmed review: the control-repo commit that was reviewed
    emergency: bool = False  # `--emergency`: goes through a deploy freeze (noted in the SAL)
    reason: str = ""  # why an admin's `--force` overrides a freeze


@dataclass
class Deploy:
    id: int
    req: DeployRequest
    version: str
    from_version: str | None
    commit: str | None  # the control-repo commit checked out (None: emergency rollback)
    source: str  # e.g. `main@1a2b3c4d` or `bump_builds-api (MR !12)@...`
    mr: OpenBump | None
    checked: Checked
    started: float = field(default_factory=time.monotonic)
    tests: str = ""  # the functional tests' line, once they ran
    tests_tail: str = ""  # their last output lines (for the MR note)
    revision: int | None = None  # emergency rollbacks: the Helm revision returned to
    from_revision: int | None = None

    @property
    def is_rollback(self) -> bool:
        return self.req.action.is_rollback

    def what(self) -> str:
        """`builds-api 0.0.134 to tools`, or for a rollback both versions:
        `builds-api in tools from 0.0.134 (revision 7) to 0.0.132 (revision 5)`."""
        c, env = self.req.component, self.req.env
        if not self.is_rollback:
            return f"{c} {self.version} to {env}"
        old = self.from_version or "an unknown version"
        if self.from_revision is not None:
            old += f" (revision {self.from_revision})"
        new = self.version or "the previous Helm revision"
        if self.revision is not None:
            new += f" (revision {self.revision})"
        return f"{c} in {env} from {old} to {new}"

    @property
    def refs(self) -> list[str]:
        """What the SAL line cites: the MR, else the commit; then the tasks."""
        if self.mr is not None:
            return [f"!{self.mr.iid}", *self.req.tasks]
        return ([self.commit[:8]] if self.commit else []) + list(self.req.tasks)

    @property
    def for_tasks(self) -> str:
        """`, T123` for announcements (stashbot and readers find the task), or ""."""
        return "".join(f", {t}" for t in self.req.tasks)


@dataclass(frozen=True)
class DeployOutcome:
    id: int | None
    state: str  # done | failed | refused | interrupted | nothing (nothing to apply)
    line: str
    version: str | None = None


@dataclass(frozen=True)
class InFlight:
    """A deploy that has not finished (per the store)."""

    id: int
    component: str
    env: str
    version: str
    state: str
