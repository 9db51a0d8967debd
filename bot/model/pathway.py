"""A commit's path to production as "step k of n": pure, no I/O (the facts come from the
model: an environment counts when what runs there contains the version).

Steps: 1 merged · 2 pipeline built image+chart · 3 control-repo bump open (an MR, or on the
plain git forge the bump commit) · then one step per configured environment, in order: the
version is live there (or, while nothing reports live state, pinned there). k is the last
step reached with every step before it reached too, so a version pinned in production but
not built is still at step 1. A version pinned where live state is known but not running
there has not reached that step: it is "pinned in tools, not applied", and says how to
apply it. `!deploy`, `!promote`, `!where` and `!status` all count with this one function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    number: int
    label: str  # what this step means, e.g. "merged", "live in tools"
    reached: bool
    link: str | None = None
    env: str | None = None
    pending: bool = False  # pinned in env but not running there (live state known)


@dataclass(frozen=True)
class Pathway:
    steps: tuple[Step, ...]

    @property
    def n(self) -> int:
        return len(self.steps)

    @property
    def k(self) -> int:
        """The last step reached with all earlier steps reached (0: not even merged)."""
        k = 0
        for step in self.steps:
            if not step.reached:
                break
            k = step.number
        return k

    @property
    def current(self) -> Step | None:
        return self.steps[self.k - 1] if self.k else None

    @property
    def next(self) -> Step | None:
        return self.steps[self.k] if self.k < self.n else None

    def describe(self, advice: str | Mapping[str, str] | None = None) -> str:
        """`step 3 of 5 (bump MR open); next: live in toolsbeta`, then for each environment
        where the version is pinned but not running: `pinned in tools, not applied —
        !apply builds-api tools`. `advice` is the planner's command per environment (or a
        prefix like `!apply builds-api` the environment's name is added to)."""
        current = self.current
        text = f"step {self.k} of {self.n}" + (f" ({current.label})" if current else "")
        nxt = self.next
        text += f"; next: {nxt.label}" if nxt else ""
        for step in self.steps:
            if step.pending and step.env:
                text += f" · pinned in {step.env}, not applied"
                if isinstance(advice, str):
                    text += f" — {advice} {step.env}"
                elif advice and advice.get(step.env):
                    text += f" — {advice[step.env]}"
        return text


def step_count(envs: Sequence[str]) -> int:
    return 3 + len(envs)


def pathway(
    envs: Sequence[str],
    *,
    merged: bool,
    built: bool,
    bump_open: bool,
    pinned: Mapping[str, bool],
    live: Mapping[str, bool | None] | None = None,
    links: Mapping[str, str | None] | None = None,
    bump_label: str = "bump MR open",
) -> Pathway:
    """The path for one version. `live[env]` None means unknown (then pinned counts).

    A version pinned or live in an environment is past the bump step even when no bump is
    open any more (the MR was merged), so `bump_open` only matters before that.
    """
    live = live or {}
    links = links or {}
    env_steps = []
    for i, env in enumerate(envs):
        state = live.get(env)
        pending = False
        if state is None:
            reached, label = bool(pinned.get(env)), f"pinned in {env}"
        else:
            reached, label = state, f"live in {env}"
            pending = bool(pinned.get(env)) and not state
        env_steps.append(Step(4 + i, label, reached, links.get(env), env, pending))
    landed = any(s.reached or s.pending for s in env_steps)
    steps = (
        Step(1, "merged", merged, links.get("merged")),
        Step(2, "built image+chart", built, links.get("built")),
        Step(3, bump_label, bump_open or landed, links.get("bump")),
        *env_steps,
    )
    return Pathway(steps)
