"""The IRC server killed and restarted 10 times during a burst: no final state is lost.

A final state the bot announced must reach the channel even when the server dies under
it: the outbox keeps a line pending until the IRC adapter accepted it, and the adapter
refuses lines while it is not connected and in the channel. The watcher is in the channel
before the bot after every restart (`tests/support/ircrestarts.py`), so a final it never
saw was never shown to anyone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ircrestarts import burst_with_restarts

pytestmark = pytest.mark.faults


async def test_no_final_state_is_lost_over_ten_server_restarts(tmp_path: Path) -> None:
    run = await burst_with_restarts(tmp_path, pipelines=50, restarts=10)
    assert run.http_not_200 == 0
    assert run.restarts == 10
    assert run.late_sessions == 0, "the watcher must be in the channel before the bot"
    assert run.bot_sessions >= 11, "the bot reconnected after every restart"
    assert run.lost == [], f"finals never shown: {run.lost} ({run})"


async def test_a_line_on_the_wire_when_the_server_dies_is_sent_again(tmp_path: Path) -> None:
    """Killed the instant one of the bot's lines passes on to the server: IRC never
    acknowledges a PRIVMSG, so only the fence (a PING whose PONG proves the lines before it
    were handled) tells the bot which lines to send again after it rejoined."""
    run = await burst_with_restarts(
        tmp_path, pipelines=20, restarts=5, in_flight=True, deadline_s=35.0
    )
    assert run.restarts == 5
    assert run.late_sessions == 0, "the watcher must be in the channel before the bot"
    assert run.lost == [], f"finals never shown: {run.lost} ({run})"
    assert run.resent > 0, f"no line was sent again after a kill ({run})"
