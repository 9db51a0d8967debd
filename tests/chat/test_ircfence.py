"""The delivery fence's bookkeeping (bot.chat.irc.fence): which lines go again after a reconnect."""

from __future__ import annotations

from bot.chat.irc.fence import MARKER, Fence, repeated


def lines(n: int, target: str = "#ops") -> list[str]:
    return [f"PRIVMSG {target} :line {i}" for i in range(n)]


def resend_all(fence: Fence, deliverable: str = "#ops") -> list[str]:
    out = []
    while entry := fence.next_resend(lambda t: t == deliverable):
        out.append(entry.line)
    return out


def test_a_pong_confirms_exactly_the_lines_written_before_its_ping() -> None:
    fence = Fence()
    first, second = lines(2)
    fence.wrote(first)
    assert fence.ping_due()
    token = fence.ping(now=1.0)
    assert not fence.ping_due(), "at most one PING is outstanding"
    fence.wrote(second)  # after the PING: not covered by it
    assert fence.pong("someone-elses-token") == 0
    assert fence.pong(token) == 1
    assert fence.unconfirmed == 1
    assert fence.ping_due(), "the line written while the PING was out needs its own"
    assert fence.lost() == 1
    assert resend_all(fence) == [second]


def test_nothing_unconfirmed_needs_no_ping_and_a_lost_connection_resends_nothing() -> None:
    fence = Fence()
    assert not fence.ping_due()
    fence.wrote(lines(1)[0])
    assert fence.pong(fence.ping(0.0)) == 1
    assert not fence.ping_due()
    assert fence.lost() == 0
    assert fence.next_resend(lambda t: True) is None


def test_unconfirmed_lines_go_again_in_the_order_first_said_across_two_losses() -> None:
    fence = Fence()
    said = lines(4)
    for line in said:
        fence.wrote(line)
    assert fence.lost() == 4
    first = fence.next_resend(lambda t: True)
    assert first is not None and first.line == said[0]
    fence.wrote_again(first)  # sent again on the new connection, then that one dies too
    fence.wrote(new := "PRIVMSG #ops :new")
    assert fence.lost() == 5
    assert resend_all(fence) == [*said, new]


def test_a_line_whose_channel_is_not_joined_yet_waits_and_keeps_its_place() -> None:
    fence = Fence()
    fence.wrote("PRIVMSG #a :one")
    fence.wrote("PRIVMSG alice :two")
    fence.wrote("PRIVMSG #a :three")
    fence.lost()
    assert resend_all(fence, "alice") == ["PRIVMSG alice :two"]
    assert fence.to_resend == 2
    entry = fence.next_resend(lambda t: t == "#a")
    assert entry is not None
    fence.put_back(entry)  # could not be written after all
    assert resend_all(fence, "#a") == ["PRIVMSG #a :one", "PRIVMSG #a :three"]


def test_memory_is_bounded_dropping_the_oldest() -> None:
    fence = Fence(cap=3)
    said = lines(5)
    dropped = [d for line in said[:3] for d in fence.wrote(line)]
    fence.lost()  # three wait to be resent
    dropped += [d for line in said[3:] for d in fence.wrote(line)]
    assert dropped == said[:2]
    assert fence.unconfirmed + fence.to_resend == 3
    fence.lost()
    assert resend_all(fence) == said[2:]


def test_the_keepalive_ping_may_be_sent_with_nothing_to_confirm() -> None:
    fence = Fence()
    token = fence.ping(now=5.0)
    assert fence.ping_sent_at == 5.0
    assert fence.pong(token) == 0
    assert fence.ping_sent_at is None


def test_a_repeated_line_is_marked_when_the_mark_fits_and_never_cut() -> None:
    line = "PRIVMSG #ops :builds-api #7 success 1m5s"
    assert repeated(line, prefix_len=30) == line + MARKER
    full = "PRIVMSG #ops :" + "x" * (512 - 2 - 32 - len("PRIVMSG #ops :"))
    assert repeated(full, prefix_len=30) == full
