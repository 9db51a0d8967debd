"""Monitor alerts: raised once, reminded on a schedule, cleared with a line when resolved.

The monitors report what they find (`Finding`s) and which (kind, component, env) scopes they
could actually check; `plan` diffs that against the stored alerts and says what to announce.
A scope whose source failed is left as it was, so an unreachable cluster never "resolves" an
alert. `AlertStore` persists the state in the `alerts` table so a restart neither repeats nor
forgets an alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from bot.core.text import format_age
from bot.store.db import Store, StoreConn

KINDS = (
    "drift", "undeployed", "unhealthy", "missing-artifact", "helm-release", "no-pdb",
    "cert-expiry", "unapplied", "image-digest", "cert-restart", "rollback-target-missing",
)  # fmt: skip

Key = tuple[str, str, str, str]  # kind, component, env, detail
Scope = tuple[str, str, str]  # kind, component, env


# in an undeployed alert's text while a deliberate rollback holds the environment back
DELIBERATE = "kept back deliberately until the next deploy"
# what an `image-digest` alert says, in its text and in `!status`
IMAGE_MISMATCH = "running a different image than the pin's"


@dataclass(frozen=True)
class Finding:
    """Something wrong now. `detail` is part of the identity ("" for one alert per scope);
    `text` says what is wrong and may change without making it a new alert."""

    kind: str
    component: str
    env: str
    detail: str
    text: str
    since: float | None = None  # when it started, if the source knows (else: first seen)

    @property
    def key(self) -> Key:
        return (self.kind, self.component, self.env, self.detail)


@dataclass(frozen=True)
class Alert:
    kind: str
    component: str
    env: str
    detail: str
    text: str
    first_seen: float
    since: float | None = None
    raised_at: float | None = None  # None: found, but still within its grace period
    reminded_at: float | None = None

    @property
    def key(self) -> Key:
        return (self.kind, self.component, self.env, self.detail)

    @property
    def scope(self) -> Scope:
        return (self.kind, self.component, self.env)

    @property
    def raised(self) -> bool:
        return self.raised_at is not None

    @property
    def started(self) -> float:
        return self.since if self.since is not None else self.first_seen

    def describe(self, now: float) -> str:
        """`drift builds-api toolsbeta: <text> (for 2h)`; no age under a minute."""
        age = f" (for {self.age(now)})" if now - self.started >= 60 else ""
        return f"{self.kind} {self.component} {self.env}: {self.text}{age}"

    def age(self, now: float) -> str:
        return format_age(now - self.started)


@dataclass(frozen=True)
class Action:
    verb: Literal["raise", "remind", "clear"]
    alert: Alert

    def line(self, now: float) -> str:
        a = self.alert
        if self.verb == "raise":
            return f"ALERT {a.describe(now)}"
        if self.verb == "remind":
            return f"still ALERT {a.describe(now)}"
        # what it was, in its first clause: not the old advice (its `next:` step is done)
        was = a.text.split(";", 1)[0]
        return f"RESOLVED {a.kind} {a.component} {a.env} after {a.age(now)} (was: {was})"

    @property
    def announce_key(self) -> str:
        return "alert:" + ":".join(self.alert.key)


def plan(
    findings: Iterable[Finding],
    stored: Mapping[Key, Alert],
    checked: set[Scope],
    *,
    now: float,
    grace: Mapping[str, float],
    remind_every: float,
) -> tuple[list[Action], dict[Key, Alert]]:
    """The announcements due and the new stored state (pure)."""
    actions: list[Action] = []
    state: dict[Key, Alert] = {}
    current = {f.key: f for f in findings}
    for key, alert in stored.items():
        if key not in current and alert.scope not in checked:
            state[key] = alert  # not looked at this time: unchanged
        elif key not in current and alert.raised:
            actions.append(Action("clear", alert))
    for key, f in current.items():
        old = stored.get(key)
        alert = (
            replace(old, text=f.text, since=f.since)
            if old is not None
            else Alert(f.kind, f.component, f.env, f.detail, f.text, now, f.since)
        )
        if not alert.raised:
            if now - alert.started >= grace.get(f.kind, 0.0):
                alert = replace(alert, raised_at=now, reminded_at=now)
                actions.append(Action("raise", alert))
        elif now - (alert.reminded_at or 0.0) >= remind_every:
            alert = replace(alert, reminded_at=now)
            actions.append(Action("remind", alert))
        state[key] = alert
    return actions, state


_COLUMNS = "kind, component, env, detail, text, first_seen, since, raised_at, reminded_at"


class AlertStore:
    """The `alerts` table: every finding the monitors track, raised or still in grace."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def load(self) -> dict[Key, Alert]:
        rows = await self.store.fetchall(f"SELECT {_COLUMNS} FROM alerts")
        alerts = [Alert(**dict(r)) for r in rows]
        return {a.key: a for a in alerts}

    async def save(self, alerts: Mapping[Key, Alert]) -> None:
        def write(conn: StoreConn) -> None:
            conn.execute("DELETE FROM alerts")
            conn.executemany(
                f"INSERT INTO alerts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (a.kind, a.component, a.env, a.detail, a.text, a.first_seen, a.since,
                     a.raised_at, a.reminded_at)
                    for a in alerts.values()
                ],
            )  # fmt: skip

        await self.store.transaction(write)

    async def active(self) -> list[Alert]:
        """Raised alerts, by component, env and kind."""
        rows = await self.store.fetchall(
            f"SELECT {_COLUMNS} FROM alerts WHERE raised_at IS NOT NULL"
            " ORDER BY component, env, kind, detail"
        )
        return [Alert(**dict(r)) for r in rows]
