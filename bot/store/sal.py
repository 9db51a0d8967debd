"""The Server Admin Log: every mutating action is recorded here before it reports done.

An entry is written to the store first (with one pending delivery row per extra sink) in a
single transaction; then each sink is tried. A sink that fails keeps its delivery row
pending and is retried from the store by `retry_pending()`, so no entry is ever lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config.model import SalSink
from bot.core.redact import Redactor
from bot.store.db import Store, StoreConn

log = logging.getLogger("deploybot.sal")


@dataclass
class SalEntry:
    actor: str  # verified identity, e.g. irc:taavi
    action: str  # log, deploy, apply, rollback, rollback-emergency, lock, unlock, ...
    message: str  # the human line, e.g. "taavi: builds-api A -> B in tools (!812, T358908)"
    component: str | None = None
    env: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    commit_sha: str | None = None
    mr_url: str | None = None
    tasks: list[str] = field(default_factory=list)
    result: str | None = None
    log_url: str | None = None
    sal_project: str | None = None
    ts: str = ""
    id: int | None = None
    action_id: str | None = None  # shared by every entry of one action (one chat command)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


# The action being handled (set by the command dispatcher; copied into the tasks it starts,
# so a deploy running in the background still writes its entries under the same action).
current_action: ContextVar[str | None] = ContextVar("current_action", default=None)


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def actor_name(identity: str) -> str:
    """The short name shown in SAL lines: `irc:taavi` -> `taavi`, JIDs keep their local part;
    a GitLab user stays `gitlab:alice`."""
    value = identity.partition(":")[2] or identity
    if identity.startswith("gitlab:"):  # a webhook's user is not the chat user of that name
        return identity
    if identity.startswith("irc-host:"):
        return value.partition("!")[0]
    if identity.startswith("xmpp:"):
        return value.partition("@")[0]
    return value


def deploy_message(
    actor: str,
    component: str,
    from_version: str | None,
    to_version: str,
    env: str,
    refs: list[str],
) -> str:
    """`taavi: builds-api A -> B in tools (!812, T358908)`."""
    text = f"{actor_name(actor)}: {component} {from_version or '(none)'} -> {to_version} in {env}"
    return text + (f" ({', '.join(refs)})" if refs else "")


def stashbot_line(entry: SalEntry, *, relay: bool = True) -> str:
    """The line stashbot logs: `!log <actor> <project> <message>` in the relay form it
    expects from a bot speaking for people (logmsgbot), else `!log <project> <message>`."""
    who = "".join(actor_name(entry.actor).split()) or "unknown"
    text = " ".join(entry.message.split())
    if relay:
        return f"!log {who} {entry.sal_project} {text.removeprefix(who + ': ')}"
    return f"!log {entry.sal_project} {text}"


Sender = Callable[[SalEntry], Awaitable[None]]


class Sal:
    """Record entries and deliver them to the configured sinks."""

    def __init__(
        self,
        store: Store,
        sinks: list[SalSink],
        redactor: Redactor,
        irc_send: Callable[[str, str], Awaitable[None]] | None = None,
        default_project: str = "deploybot",
    ):
        self.store = store
        self.redactor = redactor
        self.default_project = default_project
        self._senders: dict[str, Sender] = {}
        for sink in sinks:
            if sink.jsonl is not None:
                self._senders[sink.name] = self._jsonl_sender(sink.jsonl)
            elif sink.irc_channel is not None and irc_send is not None:
                self._senders[sink.name] = self._irc_sender(sink, irc_send)
            elif sink.irc_channel is not None:
                log.warning("SAL sink %s needs chat.irc; entries stay pending", sink.name)
                self._senders[sink.name] = self._unavailable(sink.name)

    @staticmethod
    def _jsonl_sender(path: Path) -> Sender:
        def append(line: str) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()

        async def send(entry: SalEntry) -> None:
            await asyncio.to_thread(append, json.dumps(entry.to_json(), sort_keys=True))

        return send

    @staticmethod
    def _irc_sender(sink: SalSink, irc_send: Callable[[str, str], Awaitable[None]]) -> Sender:
        channel, relay = sink.irc_channel or "", sink.relay

        async def send(entry: SalEntry) -> None:
            await irc_send(channel, stashbot_line(entry, relay=relay))

        return send

    @staticmethod
    def _unavailable(name: str) -> Sender:
        async def send(entry: SalEntry) -> None:
            raise ConnectionError(f"{name} is not available")

        return send

    async def record(self, entry: SalEntry) -> SalEntry:
        """Persist the entry (and its pending deliveries), then deliver it. Returns it with id."""
        entry.message = self.redactor(entry.message)
        entry.ts = entry.ts or utcnow()
        entry.sal_project = entry.sal_project or self.default_project
        entry.action_id = entry.action_id or current_action.get()
        # a refusal changed nothing: it stays in the store (`!sal`, /sal, `deploybot sal`)
        # and is not broadcast to the IRC/JSONL sinks
        sinks = [] if entry.result == "refused" else list(self._senders)

        def write(conn: StoreConn) -> int:
            cur = conn.execute(
                "INSERT INTO sal (ts, actor, component, env, action, from_version, to_version,"
                " commit_sha, mr_url, tasks, result, log_url, message, sal_project, action_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.ts, entry.actor, entry.component, entry.env, entry.action,
                    entry.from_version, entry.to_version, entry.commit_sha, entry.mr_url,
                    ",".join(entry.tasks), entry.result, entry.log_url, entry.message,
                    entry.sal_project, entry.action_id,
                ),
            )  # fmt: skip
            entry_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO sal_delivery (entry_id, sink) VALUES (?, ?)",
                [(entry_id, s) for s in sinks],
            )
            return entry_id

        entry.id = await self.store.transaction(write)
        for sink in sinks:
            await self._deliver(entry, sink)
        return entry

    async def _deliver(self, entry: SalEntry, sink: str) -> bool:
        try:
            await self._senders[sink](entry)
        except Exception as exc:  # a failing sink must never lose or block the entry
            err = self.redactor(str(exc))[:200]
            log.warning("SAL sink %s failed for entry %s: %s", sink, entry.id, err)
            await self.store.execute(
                "UPDATE sal_delivery SET attempts=attempts+1, last_error=?"
                " WHERE entry_id=? AND sink=?",
                (err, entry.id, sink),
            )
            return False
        await self.store.execute(
            "UPDATE sal_delivery SET attempts=attempts+1, delivered_at=?, last_error=NULL"
            " WHERE entry_id=? AND sink=?",
            (utcnow(), entry.id, sink),
        )
        return True

    async def retry_pending(self) -> int:
        """Re-send every undelivered (entry, sink); return how many were delivered now."""
        rows = await self.store.fetchall(
            "SELECT entry_id, sink FROM sal_delivery WHERE delivered_at IS NULL ORDER BY entry_id"
        )
        delivered = 0
        for row in rows:
            if row["sink"] not in self._senders:
                continue
            entries = await self.query(entry_id=row["entry_id"], limit=1)
            if entries and await self._deliver(entries[0], row["sink"]):
                delivered += 1
        return delivered

    async def query(
        self,
        *,
        component: str | None = None,
        env: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        entry_id: int | None = None,
        limit: int = 5,
    ) -> list[SalEntry]:
        """Newest-first entries matching the filters (`actor` matches the short name too)."""
        where: list[str] = []
        params: list[object] = []
        if component:
            where.append("component = ?")
            params.append(component)
        if env:
            where.append("env = ?")
            params.append(env)
        if actor:
            where.append("(actor = ? OR actor LIKE ? OR actor LIKE ?)")
            params += [actor, f"%:{actor}", f"irc-host:{actor}!%"]
        if since:
            where.append("ts >= ?")
            params.append(since)
        if entry_id is not None:
            where.append("id = ?")
            params.append(entry_id)
        sql = "SELECT * FROM sal" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        rows = await self.store.fetchall(sql, (*params, limit))
        return [
            SalEntry(
                actor=r["actor"],
                action=r["action"],
                message=r["message"],
                component=r["component"],
                env=r["env"],
                from_version=r["from_version"],
                to_version=r["to_version"],
                commit_sha=r["commit_sha"],
                mr_url=r["mr_url"],
                tasks=[t for t in r["tasks"].split(",") if t],
                action_id=r["action_id"],
                result=r["result"],
                log_url=r["log_url"],
                sal_project=r["sal_project"],
                ts=r["ts"],
                id=r["id"],
            )  # fmt: skip
            for r in rows
        ]


_AGE_RE = re.compile(r"^(\d{1,6})([smhdw])$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime | None = None) -> str:
    """`--since` as the store's timestamp format: an ISO date or time (UTC unless it says
    otherwise) or an age (`30m`, `1h`, `2d`, `1w`); ValueError names what is accepted."""
    now = now or datetime.now(UTC)
    m = _AGE_RE.match(text.strip())
    if m is not None:
        when = now - timedelta(seconds=int(m.group(1)) * _AGE_UNITS[m.group(2)])
    else:
        try:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"--since {text[:40]!r}: give an ISO time (2026-11-01, 2026-11-01T12:00:00Z)"
                " or an age (30m, 1h, 2d, 1w)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
