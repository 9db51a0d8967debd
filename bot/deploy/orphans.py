"""Deploy processes that outlived a bot that was killed, found again and waited for.

Each deploy command runs in its own process group; its group id is in
`<deploys dir>/<id>.pgid` while it runs (the child writes it before the command starts, so
a bot killed right after the spawn still leaves it), and the direct child dies with the bot
(`PR_SET_PDEATHSIG`). Its own children (helm under helmfile) may not: after a restart, a
group that still has members is an orphan of that deploy. While it runs, a new apply of
the same component+environment is refused (two syncs of one release must never overlap);
when it is gone, the channel is told and the refusal lifts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path


def pgid_path(deploys_dir: Path, deploy_id: int) -> Path:
    return deploys_dir / f"{deploy_id}.pgid"


def group_alive(pgid: int) -> bool:
    """True while any process of the group runs. Zombies do not count: a child killed with
    the bot waits, dead, for init to reap it."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphan_group(deploys_dir: Path, deploy_id: int) -> int | None:
    """The process group a crashed deploy left running, if any."""
    path = pgid_path(deploys_dir, deploy_id)
    try:
        pgid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if pgid > 1 and group_alive(pgid):
        return pgid
    with contextlib.suppress(OSError):
        path.unlink()
    return None


async def wait_gone(
    deploys_dir: Path,
    deploy_id: int,
    pgid: int,
    on_gone: Callable[[], Awaitable[None]],
    poll: float = 1.0,
) -> None:
    """Wait until the orphaned group has no members (it is not our child: poll), then
    forget its file and call `on_gone`."""
    while True:
        if not group_alive(pgid):
            break
        await asyncio.sleep(poll)
    with contextlib.suppress(OSError):
        pgid_path(deploys_dir, deploy_id).unlink()
    await on_gone()
