"""A deploy's page and its live stream: the steps as they happen and the log as it grows.

The deploy's command writes its output to the log file as it comes (`bot.cluster.runner`);
`GET /deploys/<id>/stream` tails that file and the deploy's row and sends `log`, `state`
and finally `end` events. Only whole lines are sent while the deploy runs, so a secret is
never split across two events before it is redacted.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.core.redact import Redactor
from bot.core.text import format_duration
from bot.deploy.records import ACTIVE_STATES, deploy_rows
from bot.store.db import Store

POLL = 0.25
_EXIT_RE = re.compile(r"^\[deploybot\] (exit (-?\d+) after [\d.]+s|killed after .*)$")


@dataclass(frozen=True)
class StepView:
    command: str
    status: str  # running | ok | failed
    detail: str


def steps_of(log: str) -> list[StepView]:
    """Each `$ argv` the deploy ran, with how it ended (from the runner's own lines)."""
    steps: list[StepView] = []
    for line in log.splitlines():
        if line.startswith("$ "):
            steps.append(StepView(line[2:][:500], "running", ""))
            continue
        m = _EXIT_RE.match(line)
        if m and steps and steps[-1].status == "running":
            code = m.group(2)
            ok = code is not None and (
                code == "0" or (code == "2" and " diff" in steps[-1].command)
            )
            steps[-1] = StepView(steps[-1].command, "ok" if ok else "failed", m.group(1))
    return steps


def state_of(row: dict[str, Any], log: str) -> dict[str, Any]:
    end = row["finished_at"] or time.time()
    return {
        "state": row["state"],
        "finished": row["state"] not in ACTIVE_STATES,
        "result": row["result"] or "",
        "elapsed": format_duration(end - row["started_at"]),
        "steps": [asdict(s) for s in steps_of(log)],
    }


async def read_from(path: Path, offset: int) -> bytes:
    def read() -> bytes:
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                return fh.read(1 << 20)
        except OSError:
            return b""

    return await asyncio.to_thread(read)


def _frame(kind: str, data: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def stream_deploy(
    request: web.Request,
    store: Store,
    log_path: Path,
    redactor: Redactor,
    deploy_id: int,
    closing: asyncio.Event,
) -> web.StreamResponse:
    """`GET /deploys/<id>/stream` (the caller checked that the deploy exists)."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache, no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    offset, text, last_state = 0, "", None
    try:
        await resp.write(b"retry: 2000\n\n")
        while not closing.is_set():
            rows = await deploy_rows(store, deploy_id=deploy_id, limit=1)
            if not rows:
                break
            row = rows[0]
            finished = row["state"] not in ACTIVE_STATES
            chunk = await read_from(log_path, offset)
            if not finished and b"\n" in chunk:
                chunk = chunk[: chunk.rindex(b"\n") + 1]
            elif not finished:
                chunk = b""
            if chunk:
                offset += len(chunk)
                piece = redactor(chunk.decode("utf-8", "replace"))
                text += piece
                await resp.write(_frame("log", {"text": piece}))
            state = state_of(row, text)
            if state != last_state:
                await resp.write(_frame("state", state))
                last_state = state
            if finished and len(chunk) < 1 << 20:
                await resp.write(_frame("end", {"state": row["state"]}))
                break
            await asyncio.sleep(POLL)  # tailing a file another process writes
    except ConnectionResetError:  # the page went away
        pass
    return resp
