"""Chat lines: every one fits one IRC message (400 bytes with its `PRIVMSG <room> :`) and
keeps its `next:` command, or its closing command's clause, when that is short."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.text import LINE_BYTES, chat_line

VERSION = "0.0.134-20261107230700-43712340"
rooms = st.sampled_from(["#ops", "#toolforge-deploy", "ops@conference.localhost", "console",
                         "#" + "r" * 50])  # fmt: skip
words = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from([VERSION, "·", "next:", "é", "🚀", "builds-api", "!apply", "(deploy #1)"]),
)
texts = st.lists(words, max_size=120).map(" ".join)


@settings(max_examples=150)
@given(text=texts, room=rooms)
def test_every_line_fits_one_irc_message(text: str, room: str) -> None:
    line = chat_line(text, room, "!")
    assert len(f"PRIVMSG {room} :{line}".encode()) <= LINE_BYTES
    if len(f"PRIVMSG {room} :{text}".encode()) <= LINE_BYTES:
        assert line == text  # a line that fits is said as it is


@given(filler=st.text(alphabet="abc é", min_size=500, max_size=2000))
def test_a_long_line_keeps_its_next_step(filler: str) -> None:
    line = chat_line(f"ALERT drift {filler}; next: !apply builds-api tools", "#ops", "!")
    assert line.endswith("; next: !apply builds-api tools") or line.endswith(
        "next: !apply builds-api tools"
    )
    assert "…" in line and len(f"PRIVMSG #ops :{line}".encode()) <= LINE_BYTES


def test_a_long_line_without_next_keeps_its_command_clause() -> None:
    text = "review #1: " + "x/y/z, " * 80 + "· nothing applied; a deployer confirms with !apply a b"
    line = chat_line(text, "#ops", "!")
    assert line.endswith(" … a deployer confirms with !apply a b"), line
