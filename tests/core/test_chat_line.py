"""Chat lines: every one fits one IRC message (400 bytes with its `PRIVMSG <room> :`), shows
versions short, and keeps its `next:` command, or its closing command's clause, when that is
short."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.text import LINE_BYTES, chat_line
from bot.core.versions import Tag, resolve_ref
from tests.support.examples import examples
from tests.support.shown import shown

VERSION = "0.0.134-20261107230700-43712340"
rooms = st.sampled_from(["#ops", "#toolforge-deploy", "ops@conference.localhost", "console",
                         "#" + "r" * 50])  # fmt: skip
words = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from([VERSION, "·", "next:", "é", "🚀", "builds-api", "!apply", "(deploy #1)"]),
)
texts = st.lists(words, max_size=120).map(" ".join)


@settings(max_examples=examples(150))
@given(text=texts, room=rooms)
def test_every_line_fits_one_irc_message(text: str, room: str) -> None:
    line = chat_line(text, room, "!")
    assert len(f"PRIVMSG {room} :{line}".encode()) <= LINE_BYTES
    if len(f"PRIVMSG {room} :{text}".encode()) <= LINE_BYTES and VERSION not in text:
        assert line == text  # a line that fits is said as it is
    said = text.replace(VERSION, shown(VERSION))
    if "!" not in text and len(f"PRIVMSG {room} :{said}".encode()) <= LINE_BYTES:
        assert line == said  # versions shown short, nothing else changed


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


TAGS = [Tag(VERSION, "43712340" + "0" * 32), Tag("0.0.133-20261107220700-a0185ab7", "a" * 40)]


def test_a_line_shows_versions_short_but_its_next_step_in_full() -> None:
    text = (f"ALERT undeployed builds-api tools: 2 releases merged (newest {VERSION}, tools pins"
            f" 0.0.133-20261107220700-a0185ab7); next: !deploy builds-api {VERSION} to toolsbeta")  # fmt: skip
    line = chat_line(text, "#ops", "!")
    assert line == (
        "ALERT undeployed builds-api tools: 2 releases merged (newest 0.0.134 (43712340), tools"
        f" pins 0.0.133 (a0185ab7)); next: !deploy builds-api {VERSION} to toolsbeta"
    )
    # the step, typed as shown, names exactly that version
    typed = line.split("next: ", 1)[1].split()
    assert typed[:2] == ["!deploy", "builds-api"]
    assert resolve_ref(typed[2], TAGS).raw == VERSION


def test_links_and_other_versions_are_kept_as_they_are() -> None:
    kept = [
        f"log: https://bot.example/diffs/{VERSION}/page",  # a URL
        "builds-api 0.0.140-dev-mr-12 in toolsbeta",  # a dev build: no short form
        "cert-manager v1.12.0 -> 1.13.0-alpha.1",  # semver
        f"chart file builds-api-{VERSION}.tgz",  # part of a file name
        f"image toolforge/builds-api:{VERSION} missing",  # an image reference
        f"chart oci://registry.example/toolforge/builds-api:{VERSION}",
        f"container main runs {VERSION}@sha256:3f1c2a9b0e7d",  # a tag with its digest
    ]
    for text in kept:
        assert chat_line(text, "#ops", "!") == text
    assert chat_line(f"live {VERSION}.", "#ops", "!") == f"live {shown(VERSION)}."
    # on a network without a command prefix (no commands in lines) only URLs are kept
    assert chat_line(f"!deploy x {VERSION}", "#ops", "") == f"!deploy x {shown(VERSION)}"
