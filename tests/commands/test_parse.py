"""Command-line parsing: prefix and addressed forms, quoting, tasks, flags, refusals."""

import pytest

from commands.parse import ParseError, parse_line


def test_prefix_form_splits_arguments_and_tasks() -> None:
    inv = parse_line("!deploy builds-api 322f874b T358908 to tools", "!", "deploybot")
    assert inv is not None
    assert inv.name == "deploy"
    assert inv.args == ["builds-api", "322f874b", "to", "tools"]
    assert inv.tasks == ["T358908"]


@pytest.mark.parametrize("line", ["deploybot: status builds-api", "DeployBot, status builds-api"])
def test_addressed_form(line: str) -> None:
    inv = parse_line(line, "!", "deploybot")
    assert inv is not None and inv.name == "status" and inv.args == ["builds-api"]


@pytest.mark.parametrize("line", ["hello there", "!!", "! status", "deploybotx: status", ""])
def test_lines_not_for_the_bot(line: str) -> None:
    assert parse_line(line, "!", "deploybot") is None


def test_quotes_keep_words_together_and_rest_is_raw() -> None:
    inv = parse_line("!lock builds-api 'db migration running' T1", "!", "deploybot")
    assert inv is not None
    assert inv.args == ["builds-api", "db migration running"]
    assert inv.rest == "builds-api 'db migration running' T1"


def test_flags_are_separated() -> None:
    inv = parse_line("!rollback builds-api tools --emergency", "!", "deploybot")
    assert inv is not None and inv.flags == {"emergency"} and inv.args == ["builds-api", "tools"]


@pytest.mark.parametrize(
    "line,why",
    [
        ("!log hi\r\nQUIT :bye", "control characters"),
        ("!log a\x00b", "control characters"),
        ("!deploy builds-api " + "a" * 2048, "longer than"),
        ("!deploy 'builds-api", "unbalanced quotes"),
    ],
)
def test_refusals_are_one_clear_line(line: str, why: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_line(line, "!", "deploybot")
    assert why in str(err.value)
    assert "\n" not in str(err.value)


def test_shell_metacharacters_are_just_text() -> None:
    inv = parse_line("!deploy builds-api $(rm -rf /);id", "!", "deploybot")
    assert inv is not None and inv.args == ["builds-api", "$(rm", "-rf", "/);id"]


def test_the_nick_the_bot_has_now_addresses_it_too() -> None:
    """After a 433 the bot is `deploybot_` on IRC, and irssi tab-completes that nick."""
    line = "deploybot_: whoami"
    assert parse_line(line, "!", "deploybot") is None
    taken = parse_line(line, "!", "deploybot", current_nick="deploybot_")
    assert taken is not None and taken.name == "whoami"
    assert parse_line("deploybot, status", "!", "deploybot", current_nick="deploybot_") is not None
    assert parse_line("deploybot__: whoami", "!", "deploybot", current_nick="deploybot_") is None
