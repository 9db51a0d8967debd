"""The deploy guard and fencing live in the store: what two replicas (two `DeployRecords`
over one database) and a deposed leader may and may not do."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.deploy.model import DeployRequest, Refusal
from bot.deploy.records import DeployRecords, Fenced
from bot.store.db import Store
from bot.store.leader import Leadership

pytestmark = pytest.mark.both_engines


def leading(epoch: int) -> Leadership:
    """A replica that holds the lease under `epoch`."""
    leadership = Leadership(lease_seconds=60.0)
    leadership.renewed(time.monotonic(), epoch)
    return leadership


async def test_one_active_deploy_per_target_across_replicas_and_a_deposed_leader_is_fenced(
    store_url: str, tmp_path: Path
) -> None:
    stores = [Store(store_url), Store(store_url)]
    for store in stores:
        await store.open()
    try:
        old = DeployRecords(stores[0], tmp_path / "a", leading(epoch=1))
        new = DeployRecords(stores[1], tmp_path / "b", leading(epoch=2))
        req = DeployRequest("builds-api", "toolsbeta", "irc:taavi")
        first = await old.insert(req, "0.0.134", "0.0.133", "e0437775", None)
        with pytest.raises(Refusal) as err:  # the other replica sees the running deploy
            await new.insert(req, "0.0.134", "0.0.133", "e0437775", None)
        assert str(err.value) == (
            f"deploy #{first} of builds-api to toolsbeta by irc:taavi is running; nothing run"
        )
        await old.set_state(first, "applying")  # epoch 1 still leads: allowed

        await stores[1].execute(
            "INSERT INTO leader_lease (name, holder, epoch, renewed_at, expires_at)"
            " VALUES ('deploybot', 'replica-b', 2, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        with pytest.raises(Fenced):  # a newer leader holds the lease: no further step
            await old.set_state(first, "verifying")
        await new.set_state(first, "interrupted", result="interrupted: the bot restarted")
        with pytest.raises(Fenced):  # and the deposed one cannot overwrite it
            await old.set_state(first, "done", result="done")
        row = await stores[1].fetchone(
            "SELECT state, result, epoch FROM deploys WHERE id=?", (first,)
        )
        assert tuple(row) == ("interrupted", "interrupted: the bot restarted", 1)
        second = await new.insert(req, "0.0.135", "0.0.134", "a0185ab7", None)  # free again
        assert second > first
    finally:
        for store in stores:
            await store.close()
