"""The connection's line budget: chosen from the server's software unless configured."""

from __future__ import annotations

from bot.chat.pacing import INSPIRCD, NGIRCD, UNKNOWN, WirePacer, budget_for


def test_the_budget_fits_the_server_software_and_explicit_config_wins() -> None:
    assert (
        budget_for("ngircd-26.1", None).burst,
        budget_for("ngircd-26.1", None).per_second,
    ) == NGIRCD
    inspircd = budget_for("InspIRCd-3", None)
    assert (inspircd.burst, inspircd.per_second) == INSPIRCD
    assert "InspIRCd-3" in inspircd.why
    other = budget_for("solanum-1.0-dev", None)
    assert (other.burst, other.per_second) == UNKNOWN and "unknown server" in other.why
    assert (budget_for(None, None).burst, budget_for(None, None).per_second) == UNKNOWN
    mine = budget_for("ngircd-26.1", (7, 3.5))
    assert (mine.burst, mine.per_second, mine.why) == (7, 3.5, "chat.irc.flood")


def test_ngircds_budget_never_puts_three_lines_in_one_second() -> None:
    """ngircd reads at most 3 commands at a time, and in one wall-clock second the reads
    after the first may bring < 256 bytes: two lines a second, spaced, always fit."""
    pacer = WirePacer(None, now=0.0)
    pacer.learn("ngircd-26.1", now=0.0)
    now, sent = 0.0, []
    while len(sent) < 20:
        wait = pacer.wait_time(now)
        now += wait
        assert pacer.take(now)
        sent.append(now)
    assert all(
        later - earlier >= 1.0 - 1e-9 for earlier, later in zip(sent[:-2], sent[2:], strict=True)
    )


def test_learning_the_server_keeps_what_the_connection_already_spent() -> None:
    pacer = WirePacer(None, now=0.0)  # unknown yet: burst 4
    pacer.charge(0.0)  # e.g. the JOIN sent at 001, before 004 names the server
    pacer.charge(0.0)
    assert pacer.learn("InspIRCd-3", now=0.0) is not None
    assert [pacer.take(0.0) for _ in range(7)] == [True] * 6 + [False]  # 8 - the 2 spent


def test_lines_that_must_go_now_run_into_debt_that_later_lines_wait_out() -> None:
    pacer = WirePacer((1, 2.0), now=0.0)
    assert pacer.take(0.0)
    pacer.charge(0.0)  # a PONG with the bucket empty
    assert pacer.wait_time(0.0) == 1.0  # two tokens at 2/s


def test_the_budget_is_announced_once_not_on_every_reconnect() -> None:
    pacer = WirePacer(None, now=0.0)
    told = pacer.learn("ngircd-26.1", now=0.0)
    assert told is not None and told.startswith("burst 1, then 2 lines/s (ngircd-26.1")
    pacer.new_connection(5.0)
    assert pacer.learn("ngircd-26.1", now=5.0) is None
    assert pacer.learn("InspIRCd-3", now=6.0) is not None  # another server: said again
    configured = WirePacer((3, 1.5), now=0.0)
    assert configured.learn("ngircd-26.1", now=0.0) == "burst 3, then 1.5 lines/s (chat.irc.flood)"
