"""A deploy step whose bot died before the step could ask to die with it (the fork-to-prctl
window of a `kill -9`) exits at once instead of running an apply nobody watches."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from bot.cluster.runner import die_with_parent


def test_a_child_whose_parent_is_already_gone_exits_before_it_runs(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    not_our_parent = os.getpid() + 1_000_000  # the pid the bot had, now someone else's
    proc = subprocess.Popen(
        ["touch", str(ran)], preexec_fn=functools.partial(die_with_parent, not_our_parent)
    )
    assert proc.wait(timeout=10) == 1
    assert not ran.exists()


def test_a_child_of_a_live_bot_runs() -> None:
    proc = subprocess.Popen(["true"], preexec_fn=functools.partial(die_with_parent, os.getpid()))
    assert proc.wait(timeout=10) == 0
