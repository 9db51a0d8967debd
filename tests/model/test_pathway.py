"""The "step k of n" computation for a commit's path to production."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.model.pathway import pathway, step_count

ENVS = ["toolsbeta", "tools"]


def test_nothing_reached_is_step_zero() -> None:
    p = pathway(ENVS, merged=False, built=False, bump_open=False, pinned={})
    assert (p.k, p.n) == (0, 5)
    assert p.describe() == "step 0 of 5; next: merged"


def test_built_but_not_proposed_is_step_two() -> None:
    p = pathway(ENVS, merged=True, built=True, bump_open=False, pinned={})
    assert p.describe() == "step 2 of 5 (built image+chart); next: bump MR open"


def test_open_bump_mr_is_step_three() -> None:
    p = pathway(ENVS, merged=True, built=True, bump_open=True, pinned={"tools": False})
    assert p.describe() == "step 3 of 5 (bump MR open); next: pinned in toolsbeta"


def test_pinned_in_staging_after_the_mr_was_merged_is_step_four() -> None:
    p = pathway(ENVS, merged=True, built=True, bump_open=False, pinned={"toolsbeta": True})
    assert (p.k, p.current and p.current.label) == (4, "pinned in toolsbeta")


def test_production_without_staging_does_not_skip_ahead() -> None:
    p = pathway(ENVS, merged=True, built=True, bump_open=False, pinned={"tools": True})
    assert p.k == 3
    assert p.next is not None and p.next.label == "pinned in toolsbeta"


def test_steps_need_every_earlier_step() -> None:
    p = pathway(ENVS, merged=True, built=False, bump_open=True, pinned=dict.fromkeys(ENVS, True))
    assert p.k == 1


def test_live_state_overrides_pinned_when_known() -> None:
    p = pathway(
        ENVS, merged=True, built=True, bump_open=False,
        pinned={"toolsbeta": True, "tools": True}, live={"toolsbeta": True, "tools": False},
    )  # fmt: skip
    assert p.describe() == (
        "step 4 of 5 (live in toolsbeta); next: live in tools · pinned in tools, not applied"
    )
    assert p.describe("!apply builds-api").endswith(
        "pinned in tools, not applied — !apply builds-api tools"
    )


def test_pinned_but_not_running_is_past_the_bump_but_not_reached() -> None:
    """Pinned on main in tools (the bump landed), running nowhere yet: step 3, and the pin
    is named with the command that applies it."""
    p = pathway(
        ENVS, merged=True, built=True, bump_open=False,
        pinned={"tools": True}, live={"toolsbeta": False, "tools": False},
    )  # fmt: skip
    assert p.describe("!apply builds-api") == (
        "step 3 of 5 (bump MR open); next: live in toolsbeta · pinned in tools, not applied"
        " — !apply builds-api tools"
    )


def test_links_and_labels_are_kept() -> None:
    p = pathway(
        ["tools"], merged=True, built=True, bump_open=True, pinned={},
        links={"bump": "https://x/-/merge_requests/3"}, bump_label="bump committed",
    )  # fmt: skip
    assert p.steps[2].label == "bump committed"
    assert p.steps[2].link == "https://x/-/merge_requests/3"


@given(
    envs=st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=4),
    merged=st.booleans(),
    built=st.booleans(),
    bump=st.booleans(),
    pinned=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.booleans()),
)
def test_k_is_the_longest_reached_prefix(
    envs: list[str], merged: bool, built: bool, bump: bool, pinned: dict[str, bool]
) -> None:
    p = pathway(envs, merged=merged, built=built, bump_open=bump, pinned=pinned)
    assert p.n == step_count(envs) == 3 + len(envs)
    assert [s.number for s in p.steps] == list(range(1, p.n + 1))
    assert all(s.reached for s in p.steps[: p.k])
    assert p.k == p.n or not p.steps[p.k].reached
