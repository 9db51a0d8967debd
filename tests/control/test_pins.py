"""Pin editing in control-repo values files: find the one value, change only that token."""

from __future__ import annotations

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.control.pins import (
    PinError,
    locate_pin,
    pin_diff,
    pin_file_candidates,
    read_pin,
    replace_pin,
)
from tests.support import FIXTURES as SUPPORT_FIXTURES
from tests.support.examples import examples

FIXTURE = SUPPORT_FIXTURES / "control_repo"
NEW = "0.0.132-20240223090000-9f8e7d6c"

TOP_LEVEL = """\
chartVersion: 0.0.131-20240222212602-322f874b
chartRepository: tools

api:
  replicas: 3
"""

LOGGING = """\
# Bump loki.chartVersion / alloy.chartVersion, nothing else.
loki:
  # chartVersion: 0.0.1-20230101000000-00000000  (old, do not use)
  chartVersion: "0.0.5-20240101000000-abcdef12"   # trailing comment
  values:
    loki:
      storage: {type: filesystem}
alloy:
  chartVersion: '0.0.7-20240101000000-12345678'
  values:
    alloy:
      configMap:
        content: |
          chartVersion: inside-a-block-scalar
          logging { level = "info" }
"""

GOTMPL = """\
chartVersion: 0.0.412-20240220153012-8e1c0a6d
chartRepository: tools

api:
  token: {{ exec "../../helpers/get_secret.sh" (list "jobs-api-token") }}
{{- if eq .Environment.Name "tools" }}
  chartVersion: 1.0.0
  resources:
    limits: {memory: 1Gi}
{{- else }}
  resources: {}
{{- end }}
emailer:
  smtpPassword: {{ exec "../../helpers/get_secret.sh" (list "smtp") | quote }}
"""


def _changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    old_lines = old.split("\n")
    new_lines = new.split("\n")
    assert len(old_lines) == len(new_lines)
    return [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]


# --- reading -----------------------------------------------------------------


def test_top_level_pin() -> None:
    assert read_pin(TOP_LEVEL, "chartVersion") == "0.0.131-20240222212602-322f874b"
    assert read_pin(TOP_LEVEL, "chartRepository") == "tools"
    span = locate_pin(TOP_LEVEL, "chartVersion")
    assert span.line_no == 1
    assert TOP_LEVEL[span.start : span.end] == span.value


def test_nested_quoted_pins_ignore_comments_and_block_scalars() -> None:
    assert read_pin(LOGGING, "loki.chartVersion") == "0.0.5-20240101000000-abcdef12"
    assert read_pin(LOGGING, "alloy.chartVersion") == "0.0.7-20240101000000-12345678"
    assert locate_pin(LOGGING, "loki.chartVersion").line_no == 4
    # text inside a block scalar is a string, not keys
    with pytest.raises(PinError, match="not found"):
        read_pin(LOGGING, "alloy.values.alloy.configMap.content.chartVersion")


def test_gotmpl_file_with_exec_lines_and_if_blocks() -> None:
    assert read_pin(GOTMPL, "chartVersion") == "0.0.412-20240220153012-8e1c0a6d"
    # the same key name nested under api is a different pin
    assert read_pin(GOTMPL, "api.chartVersion") == "1.0.0"
    new = replace_pin(GOTMPL, "chartVersion", NEW)
    assert _changed_lines(GOTMPL, new) == [
        ("chartVersion: 0.0.412-20240220153012-8e1c0a6d", f"chartVersion: {NEW}")
    ]


def test_multi_line_template_comment_is_skipped() -> None:
    text = (
        "{{/* pinned by hand until T358123 is fixed, was:\n"
        "chartRepository: tools\n"
        "chartVersion: 0.0.1-20240101000000-aaaaaaaa\n"
        "*/}}\n"
        "chartVersion: 0.0.2-20240101000000-bbbbbbbb\n"
    )
    assert read_pin(text, "chartVersion") == "0.0.2-20240101000000-bbbbbbbb"
    text = (
        'token: {{ exec "../../helpers/get_secret.sh"\n'
        '  (list "x")\n'
        "chartVersion: 0.0.1-20240101000000-aaaaaaaa }}\n"
        "chartVersion: 0.0.2-20240101000000-bbbbbbbb\n"
    )
    assert read_pin(text, "chartVersion") == "0.0.2-20240101000000-bbbbbbbb"


def test_key_of_same_name_elsewhere_is_not_the_pin() -> None:
    text = "api:\n  chartVersion: 1.0.0\nimage:\n  chartVersion: 2.0.0\n"
    with pytest.raises(PinError, match="chartVersion not found.*api.chartVersion"):
        read_pin(text, "chartVersion")
    assert read_pin(text, "image.chartVersion") == "2.0.0"


def test_list_items_do_not_confuse_the_scanner() -> None:
    text = (
        "releases:\n"
        "  - name: loki\n"
        "    chartVersion: 9.9.9\n"
        "  -\n"
        "    chartVersion: 8.8.8\n"
        "- chartVersion: 7.7.7\n"
        "chartVersion: 1.2.3\n"
    )
    assert read_pin(text, "chartVersion") == "1.2.3"
    with pytest.raises(PinError, match="not found"):
        read_pin(text, "releases.chartVersion")


def test_quoted_keys_and_bom() -> None:
    text = "\ufeff\"loki\":\n  'chartVersion': 0.0.5-20240101000000-abcdef12\n"
    assert read_pin(text, "loki.chartVersion") == "0.0.5-20240101000000-abcdef12"
    assert replace_pin(text, "loki.chartVersion", NEW) == text.replace(
        "0.0.5-20240101000000-abcdef12", NEW
    )


# --- errors ------------------------------------------------------------------


def test_missing_key() -> None:
    with pytest.raises(PinError, match="pin key loki.chartVersion not found"):
        read_pin(TOP_LEVEL, "loki.chartVersion")
    with pytest.raises(PinError, match="not found"):
        read_pin("", "chartVersion")


def test_key_only_in_a_comment_is_missing() -> None:
    with pytest.raises(PinError, match="not found"):
        read_pin("# chartVersion: 0.0.1-20240101000000-aaaaaaaa\nfoo: bar\n", "chartVersion")


def test_duplicate_key_refused() -> None:
    text = (
        "chartVersion: 0.0.1-20240101000000-aaaaaaaa\n"
        '{{- if eq .Environment.Name "tools" }}\n'
        "chartVersion: 0.0.2-20240101000000-bbbbbbbb\n"
        "{{- end }}\n"
    )
    with pytest.raises(PinError, match=r"appears 2 times \(lines 1, 3\)"):
        replace_pin(text, "chartVersion", NEW)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("loki:\n  chartVersion: 1\n", "not a scalar"),
        ("loki:\n", "not a scalar"),
        ("loki: {chartVersion: 1}\n", "not a plain scalar"),
        ("loki: [1, 2]\n", "not a plain scalar"),
        ("loki: *anchor\n", "not a plain scalar"),
        ("loki: |\n  text\n", "not a plain scalar"),
        ("loki: {{ .Values.x }}\n", "not a plain scalar"),
        ("loki: v{{ .Values.x }}\n", "template expression"),
        ('loki: "unterminated\n', "unterminated"),
        ("loki: 'a' b\n", "unexpected text"),
        ('loki: "a\\"b"\n', "escaped"),
    ],
)
def test_value_must_be_a_scalar(text: str, phrase: str) -> None:
    with pytest.raises(PinError, match=phrase):
        read_pin(text, "loki")


@pytest.mark.parametrize("key", ["", ".", "loki.", ".loki", " loki.x", "a..b"])
def test_invalid_key(key: str) -> None:
    with pytest.raises(PinError, match="invalid pin key"):
        read_pin(TOP_LEVEL, key)


@pytest.mark.parametrize(
    "value", ["", "1.0 # x", "a\nb", "x: y", '"q"', "{{ x }}", "a b", "é", "$(id)"]
)
def test_new_value_cannot_inject(value: str) -> None:
    with pytest.raises(PinError, match="only letters, digits"):
        replace_pin(TOP_LEVEL, "chartVersion", value)


# --- replacing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("chartVersion: 0.0.1-20240101000000-aaaaaaaa", f"chartVersion: {NEW}"),
        ('chartVersion: "0.0.1-20240101000000-aaaaaaaa"', f'chartVersion: "{NEW}"'),
        ("chartVersion: '0.0.1-20240101000000-aaaaaaaa'", f"chartVersion: '{NEW}'"),
        (
            "chartVersion:   0.0.1   # pinned by T123  ",
            f"chartVersion:   {NEW}   # pinned by T123  ",
        ),
        ('chartVersion: "0.0.1"\t# x', f'chartVersion: "{NEW}"\t# x'),
        ("chartVersion: 0.0.1#not-a-comment", f"chartVersion: {NEW}"),
    ],
)
def test_replace_keeps_quoting_and_comments(line: str, expected: str) -> None:
    text = f"# header\n{line}\nchartRepository: tools\n"
    assert (
        replace_pin(text, "chartVersion", NEW) == f"# header\n{expected}\nchartRepository: tools\n"
    )


def test_replace_nested_changes_one_line() -> None:
    new = replace_pin(LOGGING, "alloy.chartVersion", NEW)
    assert _changed_lines(LOGGING, new) == [
        ("  chartVersion: '0.0.7-20240101000000-12345678'", f"  chartVersion: '{NEW}'")
    ]
    assert read_pin(new, "loki.chartVersion") == "0.0.5-20240101000000-abcdef12"


def test_replace_keeps_crlf_line_endings() -> None:
    text = TOP_LEVEL.replace("\n", "\r\n")
    new = replace_pin(text, "chartVersion", NEW)
    assert new == text.replace("0.0.131-20240222212602-322f874b", NEW)
    assert new.count("\r\n") == text.count("\r\n") and "\n" not in new.replace("\r\n", "")


def test_replace_keeps_missing_trailing_newline() -> None:
    text = "chartRepository: tools\nchartVersion: 0.0.1-20240101000000-aaaaaaaa"
    assert replace_pin(text, "chartVersion", NEW) == f"chartRepository: tools\nchartVersion: {NEW}"


def test_replace_with_same_value_is_identity() -> None:
    assert replace_pin(LOGGING, "loki.chartVersion", "0.0.5-20240101000000-abcdef12") == LOGGING


# --- files and diffs ------------------------------------------------------------


def test_pin_file_candidates() -> None:
    template = "components/{component}/values/{env}.yaml"
    assert pin_file_candidates(template, "builds-api", "tools") == [
        "components/builds-api/values/tools.yaml",
        "components/builds-api/values/tools.yaml.gotmpl",
    ]
    assert pin_file_candidates("./components//{component}/{env}.yaml.gotmpl", "a", "b") == [
        "components/a/b.yaml.gotmpl"
    ]


@pytest.mark.parametrize(
    ("component", "env"),
    [
        ("../etc", "tools"),
        ("builds-api", ".."),
        ("a..b", "tools"),
        ("a/b", "tools"),
        ("Builds", "tools"),
        ("", "tools"),
        ("x" * 64, "tools"),
        ("builds-api", "tools\n"),
        ("-x", "tools"),
    ],
)
def test_pin_file_candidates_rejects_bad_names(component: str, env: str) -> None:
    with pytest.raises(PinError, match="invalid"):
        pin_file_candidates("components/{component}/values/{env}.yaml", component, env)


@pytest.mark.parametrize(
    ("template", "phrase"),
    [
        ("/etc/{component}/{env}.yaml", "relative"),
        ("../{component}/{env}.yaml", "outside"),
        ("components/../../{component}.yaml", "outside"),
        ("components/{component}/{0.__class__}.yaml", "unknown placeholder"),
        ("components/{name}/{env}.yaml", "unknown placeholder"),
        ("components\\{component}.yaml", "invalid"),
    ],
)
def test_pin_file_candidates_stays_in_repo(template: str, phrase: str) -> None:
    with pytest.raises(PinError, match=phrase):
        pin_file_candidates(template, "builds-api", "tools")


def test_pin_diff_is_one_line_change_with_git_headers() -> None:
    new = replace_pin(LOGGING, "loki.chartVersion", NEW)
    diff = pin_diff("components/logging/values/tools.yaml", LOGGING, new)
    lines = diff.splitlines()
    assert lines[0] == "--- a/components/logging/values/tools.yaml"
    assert lines[1] == "+++ b/components/logging/values/tools.yaml"
    assert lines[2].startswith("@@ -3,3 +3,3 @@")
    assert [ln for ln in lines[3:] if ln[:1] in "+-"] == [
        '-  chartVersion: "0.0.5-20240101000000-abcdef12"   # trailing comment',
        f'+  chartVersion: "{NEW}"   # trailing comment',
    ]
    assert pin_diff("x.yaml", LOGGING, LOGGING) == ""


def test_pin_diff_marks_missing_newline_and_hides_cr() -> None:
    old = "a: 1\r\nchartVersion: 0.0.1"
    diff = pin_diff("v.yaml", old, replace_pin(old, "chartVersion", "0.0.2"))
    assert "\r" not in diff
    assert diff.endswith("+chartVersion: 0.0.2\n\\ No newline at end of file\n")


# --- properties ---------------------------------------------------------------

_VALUE = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,40}", fullmatch=True)
_NEW_VALUE = st.from_regex(r"[A-Za-z0-9._+-]{1,40}", fullmatch=True)
_NAMES = ["image", "replicas", "chartRepository", "values", "chartVersion", "loki", "alloy"]
_TEXT = st.text(alphabet="abc xyz:#-'\"{}.", max_size=20)


@st.composite
def _filler(draw: st.DrawFn, indent: str, unit: str, avoid: str) -> list[str]:
    """Lines that must not affect the pin: comments, blanks, templates, other keys."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["comment", "blank", "template", "key", "nested", "list"]))
        name = draw(st.sampled_from([n for n in _NAMES if n != avoid]))
        if kind == "comment":
            lines.append(draw(st.sampled_from([indent, ""])) + "# " + draw(_TEXT))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", indent])))
        elif kind == "template":
            lines.append(
                draw(st.sampled_from(["", indent]))
                + draw(
                    st.sampled_from(
                        [
                            '{{- if eq .Environment.Name "tools" }}',
                            "{{- end }}",
                            '{{ exec "../../helpers/get_secret.sh" (list "x") }}',
                        ]
                    )
                )
            )
        elif kind == "key":
            value = draw(
                st.sampled_from(
                    ['"x: y"', "plain", '{{ exec "../../h.sh" (list "t") }}', "[a, b]", ""]
                )
            )
            lines.append(f"{indent}{name}: {value}".rstrip())
        elif kind == "nested":
            lines.append(f"{indent}{name}:")
            lines.append(f"{indent}{unit}chartVersion: nested-{draw(_VALUE)}")
        else:
            lines.append(f"{indent}{name}:")
            lines.append(f"{indent}- chartVersion: item")
            lines.append(f"{indent}  other: x")
    return lines


@st.composite
def _pinned_files(draw: st.DrawFn) -> tuple[str, str, str, int]:
    """(text, dotted key, current value, 0-based line index of the pin)."""
    unit = draw(st.sampled_from(["  ", "    "]))
    path = draw(st.sampled_from([["chartVersion"], ["loki", "chartVersion"], ["a", "b", "tag"]]))
    value = draw(_VALUE)
    lines: list[str] = []
    for depth, part in enumerate(path):
        indent = unit * depth
        lines += draw(_filler(indent, unit, part))
        if depth < len(path) - 1:
            lines.append(f"{indent}{part}:" + draw(st.sampled_from(["", "  # parent"])))
    quote = draw(st.sampled_from(["", "'", '"']))
    sep = draw(st.sampled_from([" ", "   ", "\t"]))
    comment = draw(st.sampled_from(["", " # pinned", "   #chartVersion: 1", "  "]))
    pin_index = len(lines)
    lines.append(f"{unit * (len(path) - 1)}{path[-1]}:{sep}{quote}{value}{quote}{comment}")
    lines += draw(_filler(unit * (len(path) - 1), unit, path[-1]))
    for depth in range(len(path) - 2, -1, -1):
        lines += draw(_filler(unit * depth, unit, path[depth]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(lines) + draw(st.sampled_from([eol, ""]))
    return text, ".".join(path), value, pin_index


@settings(max_examples=examples(300), deadline=None)
@given(_pinned_files(), _NEW_VALUE)
def test_replace_round_trips_and_changes_one_line(
    case: tuple[str, str, str, int], new_value: str
) -> None:
    text, key, value, pin_index = case
    assert read_pin(text, key) == value
    new = replace_pin(text, key, new_value)
    assert read_pin(new, key) == new_value

    old_lines = text.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert changed == ([] if value == new_value else [pin_index])
    if changed:
        head, tail = old_lines[pin_index].split(":", 1)
        assert new_lines[pin_index] == head + ":" + tail.replace(value, new_value, 1)
        diff = list(difflib.unified_diff(old_lines, new_lines, n=0))
        assert sum(1 for ln in diff if ln.startswith("-") and not ln.startswith("---")) == 1
        assert sum(1 for ln in diff if ln.startswith("+") and not ln.startswith("+++")) == 1


# --- the shared control-repo fixture ----------------------------------------------

PIN_KEYS = {
    "builds-api": ["chartVersion"],
    "jobs-api": ["chartVersion"],
    "logging": ["loki.chartVersion", "alloy.chartVersion"],
}


def test_every_fixture_values_file_has_its_pins() -> None:
    values_files = sorted((FIXTURE / "components").glob("*/values/*"))
    assert len(values_files) == 9
    for path in values_files:
        component = path.parts[-3]
        env = path.name.split(".")[0]
        candidates = pin_file_candidates("components/{component}/values/{env}.yaml", component, env)
        existing = [c for c in candidates if (FIXTURE / c).is_file()]
        assert existing == [path.relative_to(FIXTURE).as_posix()]
        text = path.read_text()
        for key in PIN_KEYS[component]:
            value = read_pin(text, key)
            assert value.startswith("0.0."), (path, key, value)
            bumped = replace_pin(text, key, NEW)
            assert len(_changed_lines(text, bumped)) == 1


def test_fixture_tools_lags_behind_toolsbeta() -> None:
    def pin(component: str, env: str) -> str:
        [path] = [
            c
            for c in pin_file_candidates("components/{component}/values/{env}.yaml", component, env)
            if (FIXTURE / c).is_file()
        ]
        return read_pin((FIXTURE / path).read_text(), "chartVersion")

    assert pin("builds-api", "toolsbeta") == "0.0.131-20240222212602-322f874b"
    assert pin("builds-api", "tools") == "0.0.127-20240215103245-a1b2c3d4"
    assert pin("jobs-api", "tools") != pin("jobs-api", "toolsbeta")
