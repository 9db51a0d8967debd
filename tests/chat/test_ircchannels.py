"""Channel membership bookkeeping (sans-I/O): nothing is ever given up, waits double."""

from __future__ import annotations

from bot.chat.irc.channels import ChannelKeeper


def keeper() -> ChannelKeeper:
    return ChannelKeeper(["#Ops", "#sal"], str.lower, retry=5, retry_max=20, answer_within=30)


def test_refusals_are_retried_with_doubling_capped_waits_and_a_reason() -> None:
    chans = keeper()
    assert chans.due(0.0) == ["#Ops", "#sal"]
    assert chans.due(1.0) == []  # JOINs are out
    chans.joined("#sal")
    waits = []
    now = 0.0
    for _ in range(5):
        wait = chans.refused("#ops", "473", "Cannot join channel (+i)", now)
        assert wait is not None
        waits.append(wait)
        assert chans.due(now + wait - 0.01) == []
        now += wait
        assert chans.due(now) == ["#Ops"]
    assert 3.75 <= waits[0] <= 5 and 15 <= waits[2] <= 20 and 15 <= waits[4] <= 20
    assert chans.reason("#OPS") == "invite only (+i): Cannot join channel (+i)"
    assert chans.states() == {"#Ops": False, "#sal": True}
    chans.joined("#ops")
    assert chans.states() == {"#Ops": True, "#sal": True} and chans.reason("#ops") is None


def test_an_unanswered_join_and_a_kick_are_retried() -> None:
    chans = keeper()
    chans.due(0.0)
    chans.joined("#sal")
    assert chans.due(29.0) == []
    assert chans.due(30.0) == []  # no answer: now counted as a failure, retried after a wait
    assert chans.reason("#ops") == "no answer to JOIN in 30s"
    assert chans.due(35.1) == ["#Ops"]
    assert chans.left("#sal", "kicked by op: out", 40.0) is not None
    assert chans.states()["#sal"] is False and chans.due(45.1) == ["#sal"]
    assert chans.refused("#elsewhere", "474", "", 50.0) is None  # not ours: nothing to do
