"""The delivery fence's bookkeeping (bot.chat.irc.fence): which lines go again after a reconnect."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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


# ---- after a reconnect: superseded states, late proofs ----------------------------------

KEYS = ("pipeline:1", "pipeline:2", "deploy:3")


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[str | None, int, int]], int, int]:
    """Texts said, each (key or None, parts, its version), the lines confirmed before the
    connection died, and how many of the rest its server handled anyway (it was frozen)."""
    texts = draw(
        st.lists(
            st.tuples(st.sampled_from((*KEYS, None)), st.integers(1, 2)), min_size=1, max_size=12
        )
    )
    versions: dict[str | None, int] = {}
    said = []
    for key, parts in texts:
        versions[key] = versions.get(key, 0) + 1
        said.append((key, parts, versions[key]))
    lines = sum(parts for _, parts, _ in said)
    confirmed = draw(st.integers(0, lines))
    return said, confirmed, draw(st.integers(0, lines - confirmed))


@given(histories())
def test_after_a_loss_no_older_state_follows_a_newer_one_and_nothing_is_lost(
    history: tuple[list[tuple[str | None, int, int]], int, int],
) -> None:
    said, confirmed, handled = history
    fence = Fence()
    lines: list[tuple[str, str | None, int]] = []  # (line, key, version)
    for number, (key, parts, version) in enumerate(said, start=1):
        for part in range(parts):
            line = f"PRIVMSG #ops :{key} v{version} part {part}"
            fence.wrote(line, frozenset({key}) if key else frozenset(), said=number)
            lines.append((line, key, version))
    for _ in range(confirmed):
        fence.echoed()
    fence.lost()
    again = resend_all(fence)
    # what the channel shows: every line up to those the frozen server handled, then the resend
    shown = [line for line, _, _ in lines[: confirmed + handled]] + again
    meaning = {line: (key, version) for line, key, version in lines}
    newest: dict[str | None, int] = {}
    for line in shown:
        key, version = meaning[line]
        if key is not None:
            assert version >= newest.get(key, 0), shown  # never an older state after a newer
            newest[key] = version
    for line, key, version in lines[confirmed:]:
        if key is None or version == max(v for _, k, v in lines if k == key):
            assert line in again, "a newest state or an unkeyed line is never dropped"
    assert again == [line for line, _, _ in lines if line in again], "in the order first said"


def test_the_parts_of_one_split_text_are_kept_together() -> None:
    fence = Fence()
    keys = frozenset({"pipeline:1"})
    fence.wrote("PRIVMSG #ops :stage 2/3, part one", keys, said=1)
    fence.wrote("PRIVMSG #ops :part two", keys, said=1)
    fence.wrote("PRIVMSG #ops :a reply", said=2)
    fence.lost()
    assert resend_all(fence) == [
        "PRIVMSG #ops :stage 2/3, part one", "PRIVMSG #ops :part two", "PRIVMSG #ops :a reply"
    ]  # fmt: skip
    fence.wrote("PRIVMSG #ops :stage 2/3 again", keys, said=3)
    fence.wrote("PRIVMSG #ops :success", keys, said=4)
    fence.lost()
    assert resend_all(fence) == ["PRIVMSG #ops :success"]


def test_the_dead_connections_late_answer_spares_what_it_proves() -> None:
    fence = Fence()
    said = lines(4)
    fence.wrote(said[0])
    token = fence.ping(now=1.0)  # out when the connection dies: covers said[0]
    for line in said[1:]:
        fence.wrote(line)
    old = fence.connection
    assert fence.lost() == 4
    told = fence.lost_ping(token)
    assert told == (old, 1)
    assert fence.confirmed_late(*told) == 1  # its PONG came late, on the old socket
    assert fence.confirmed_late(old, 2) == 1  # the echo of its second line
    assert fence.lost_ping(token) is None, "a PONG proves once"
    assert resend_all(fence) == said[2:]
    fence.wrote(new := "PRIVMSG #ops :on the new connection")
    assert fence.confirmed_late(old) == 0, "lines of the new connection are not the old one's"
    fence.lost()
    assert resend_all(fence) == [new]
