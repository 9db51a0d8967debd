"""A packed line says each identical item once.

After a leader kill a final was doubled inside one packed line (`… | builds-api #900245
success 5m05s | builds-api #900245 success 5m05s`): the packer merged every unsent row.
"""

from __future__ import annotations

import pytest

from bot.chat.flood import Pending, plan_line

pytestmark = pytest.mark.faults


def test_a_doubled_final_is_packed_once_and_both_rows_are_delivered() -> None:
    final = "builds-api: pipeline 900245 on main (abcdef12): success in 5m05s https://x/900245"
    pending = [
        Pending(
            1,
            "builds-api: pipeline 900244 on main: stage test",
            short="builds-api #900244 stage test",
        ),
        Pending(2, final, short="builds-api #900245 success 5m05s"),
        Pending(3, final, short="builds-api #900245 success 5m05s"),  # the repeat
        Pending(4, "jobs-api: pipeline 77 on main: started", short="jobs-api #77 started"),
    ]
    text, ids = plan_line(pending)
    assert text.count("#900245 success 5m05s") == 1, text
    assert (
        text
        == "builds-api #900244 stage test | builds-api #900245 success 5m05s | jobs-api #77 started"
    )
    assert sorted(ids) == [1, 2, 3, 4]
