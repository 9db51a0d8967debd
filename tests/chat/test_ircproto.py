"""IRC wire format: parsing with IRCv3 tags, safe line building and splitting, account tracking."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.chat.irc.proto import (
    AccountTracker,
    clean_text,
    format_line,
    irc_lower,
    parse_line,
    split_text,
)


def test_parse_tags_source_params_trailing() -> None:
    line = parse_line(
        r"@account=op1;msgid=a\:b\sc\\d;+draft/x :op!~o@host.example PRIVMSG #ops :!deploy api v1"
        "\r\n"
    )
    assert line.tags == {"account": "op1", "msgid": "a;b c\\d", "+draft/x": ""}
    assert (line.source, line.nick, line.command) == ("op!~o@host.example", "op", "PRIVMSG")
    assert line.params == ("#ops", "!deploy api v1")


def test_parse_without_trailing_and_without_source() -> None:
    assert parse_line("PING irc.test").params == ("irc.test",)
    assert parse_line(":srv 354 me 42 #c u h n acct").params == (
        "me",
        "42",
        "#c",
        "u",
        "h",
        "n",
        "acct",
    )
    join = parse_line(":n!u@h JOIN #ops op1 :Real Name")
    assert join.params == ("#ops", "op1", "Real Name")
    assert parse_line(":srv CAP * LS :").params == ("*", "LS", "")
    with pytest.raises(ValueError):
        parse_line("@a=b :src")


def test_format_line_refuses_injection() -> None:
    assert format_line("PRIVMSG", "#ops", "hello world") == "PRIVMSG #ops :hello world"
    assert format_line("PRIVMSG", "#ops", ":-)") == "PRIVMSG #ops ::-)"
    assert format_line("JOIN", "#ops") == "JOIN #ops"
    with pytest.raises(ValueError):
        format_line("PRIVMSG", "#ops", "hi\r\nQUIT :bye")
    with pytest.raises(ValueError):
        format_line("PRIVMSG", "#a b", "hi")


def test_clean_text_removes_line_breaks_and_controls_keeps_formatting() -> None:
    assert clean_text("a\r\nQUIT :x\nb\x00c") == "a QUIT :x bc"
    assert clean_text("\x01VERSION\x01 \x02bold\x02 \x0304red") == "VERSION \x02bold\x02 \x0304red"


def test_split_short_text_is_one_line_and_empty_is_none() -> None:
    assert split_text("#ops", "deployed api v1") == ["PRIVMSG #ops :deployed api v1"]
    assert split_text("#ops", " \r\n ") == []
    with pytest.raises(ValueError):
        split_text("#ops\r\nQUIT", "x")


def test_split_prefers_word_boundaries() -> None:
    words = [f"w{i:04d}" for i in range(300)]
    lines = split_text("#ops", " ".join(words), prefix_len=60)
    assert len(lines) > 1
    chunks = [ln.removeprefix("PRIVMSG #ops :") for ln in lines]
    assert [w for c in chunks for w in c.split(" ")] == words


def test_split_budget_uses_real_prefix() -> None:
    text = "x" * 1000
    short = split_text("#ops", text, prefix_len=20)
    long = split_text("#ops", text, prefix_len=200)
    for lines, prefix_len in ((short, 20), (long, 200)):
        sizes = [1 + prefix_len + 1 + len(ln.encode()) + 2 for ln in lines]
        assert max(sizes) == 512  # fills the line exactly when no word boundary exists
    assert len(long) > len(short)


def test_split_never_cuts_a_multibyte_character() -> None:
    lines = split_text("#ops", "€" * 400)  # 3 bytes each
    assert "".join(ln.removeprefix("PRIVMSG #ops :") for ln in lines) == "€" * 400


targets = st.sampled_from(["#ops", "#a", "someone", "#" + "c" * 50])


nasty = st.text(alphabet=st.sampled_from("\r\n\x00\x01\t \ud800é€😀a:"))


@given(
    text=st.one_of(st.text(), nasty),
    target=targets,
    prefix_len=st.integers(min_value=1, max_value=200),
)
def test_split_properties(text: str, target: str, prefix_len: int) -> None:
    lines = split_text(target, text, prefix_len=prefix_len)
    head = f"PRIVMSG {target} :"
    for line in lines:
        relayed = f":{'n' * prefix_len} {line}\r\n".encode()
        assert len(relayed) <= 512
        assert line.startswith(head)
        assert not re.search(r"[\r\n\x00\x01]", line)
        line.encode("utf-8")  # valid UTF-8 (no lone surrogates)
        assert parse_line(line).params == (target, line.removeprefix(head))
    squash = re.compile(r"\s")
    sent = "".join(line.removeprefix(head) for line in lines)
    assert squash.sub("", sent) == squash.sub("", clean_text(text))


def test_irc_lower_casemappings() -> None:
    assert irc_lower("Op[1]\\~") == "op{1}|^"
    assert irc_lower("Op[1]~", "strict-rfc1459") == "op{1}~"
    assert irc_lower("Op[1]", "ascii") == "op[1]"


def test_account_tracker_follows_nick_part_quit_kick() -> None:
    t = AccountTracker()
    t.joined("Alice", "#ops")
    t.set_account("alice", "acct-a")
    assert t.account("ALICE") == "acct-a"
    t.renamed("Alice", "Alice[away]")
    assert t.account("alice{away}") == "acct-a"
    assert t.account("Alice") is None

    t.set_account("stranger", "acct-s")  # not sharing a channel: not tracked
    assert t.account("stranger") is None

    t.joined("alice[away]", "#dev")
    t.parted("alice[away]", "#ops")
    assert t.account("alice[away]") == "acct-a"  # still in #dev
    t.parted("alice[away]", "#dev")
    assert t.account("alice[away]") is None

    t.joined("bob", "#ops")
    t.set_account("bob", "acct-b")
    t.set_account("bob", "*")  # logged out
    assert t.account("bob") is None
    t.set_account("bob", "acct-b")
    t.parted("bob", None)  # QUIT
    t.joined("bob", "#ops")
    assert t.account("bob") is None  # a new bob is not the old bob

    t.joined("carol", "#ops")
    t.joined("carol", "#dev")
    t.set_account("carol", "acct-c")
    t.we_left("#ops")
    assert t.account("carol") == "acct-c"
    t.we_left("#dev")
    assert t.account("carol") is None
