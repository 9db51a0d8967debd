"""Line-surgical edits of the version pins in the deployment control repo.

A pin is one scalar in one file, e.g. `chartVersion` or `loki.chartVersion`; a list item is
addressed by one of its fields, e.g. `releases[name=cert-manager].version` in a helmfile
whose `releases:` list holds several charts. Values files may
be `.yaml.gotmpl` (Go templates, not valid YAML), and reviewers expect a one-line diff, so
pins are located by an indentation-aware line scanner rather than a YAML parser, and a bump
rewrites only the value token: comments, order, quoting, templates, line endings and the
trailing newline stay byte-identical. Pure functions over text; callers do the file I/O.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass

_NEW_VALUE_RE = re.compile(r"[A-Za-z0-9._+-]+")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_PLACEHOLDER_RE = re.compile(r"\{[^{}]*\}")
# `key:` at the start of a line's content: plain, double- or single-quoted key.
_KEY_RE = re.compile(
    r"""(?P<key>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"{}\[\],&*!|>%@`-][^#:]*?|-[^\s#:][^#:]*?)"""
    r"""[ \t]*:(?=[ \t]|$)"""
)
_BLOCK_SCALAR_RE = re.compile(r"[|>][0-9+-]*[ \t]*(?:#.*)?")
_SEGMENT_RE = re.compile(r"([^.\[\]]+)((?:\[[A-Za-z0-9_-]+=[^\[\]=]+\])*)")
_SELECTOR_RE = re.compile(r"\[([A-Za-z0-9_-]+)=([^\[\]=]+)\]")
ITEM = "[]"  # path elements of list items start with this (never a real key: it has brackets)


class PinError(ValueError):
    """A pin that cannot be read or written; one line, without the file path."""


@dataclass(frozen=True)
class PinSpan:
    """Where a pin's value token is: 1-based line number and [start, end) offsets in the text.

    For a quoted value the span excludes the quotes, so replacing it keeps the quote style.
    """

    line_no: int
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class _KeyLine:
    path: tuple[str, ...]
    line_no: int
    value_start: int  # offset in the text of the first byte after `key:`
    line_end: int  # offset of the end of the line's content (before \r?\n)


def _lines(text: str) -> Iterator[tuple[int, int, int]]:
    """(line_no, start, end) of each line's content, end excluding the `\\n` or `\\r\\n`."""
    pos = 0
    line_no = 0
    while pos < len(text):
        line_no += 1
        nl = text.find("\n", pos)
        end = len(text) if nl < 0 else nl
        content_end = end - 1 if end > pos and text[end - 1] == "\r" else end
        yield line_no, pos, content_end
        if nl < 0:
            return
        pos = nl + 1


def _unquote_key(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1].replace("''", "'")
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return raw


def _scan(text: str) -> Iterator[_KeyLine]:
    """Every mapping-key line with its full key path; list items give unaddressable paths."""
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    items = 0  # list items seen; each gets its own path element `[]<n>`
    block_indent: int | None = None  # inside a block scalar owned by a key at this indent
    in_template = False
    for line_no, start, end in _lines(text):
        line = text[start:end]
        offset = start
        if line_no == 1 and line.startswith("\ufeff"):
            line, offset = line[1:], start + 1
        body = line.lstrip(" \t")
        indent = len(line) - len(body)
        if in_template:
            in_template = "}}" not in body
            continue
        if not body.strip():
            continue
        if block_indent is not None:
            if indent > block_indent:
                continue
            block_indent = None
        if body.startswith("#"):
            continue
        if body.startswith("{{"):
            in_template = body.count("{{") > body.count("}}")
            continue
        if body.rstrip() in ("---", "...") and indent == 0:
            stack.clear()
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        col = indent
        while body.startswith("-") and (len(body) == 1 or body[1] in " \t"):
            # A list item: whatever is nested below it is not addressable by a dotted key.
            items += 1
            stack.append((col, f"{ITEM}{items}"))
            rest = body[1:].lstrip(" \t")
            col += len(body) - len(rest)
            body = rest
        m = _KEY_RE.match(body)
        if m is None:
            continue
        key = _unquote_key(m.group("key"))
        path = tuple(k for _, k in stack) + (key,)
        value_start = offset + col + m.end()
        yield _KeyLine(path=path, line_no=line_no, value_start=value_start, line_end=end)
        stack.append((col, key))
        value = text[value_start:end]
        if _BLOCK_SCALAR_RE.fullmatch(value.strip()):
            block_indent = col
        in_template = value.count("{{") > value.count("}}")


Segment = str | tuple[str, str]  # a mapping key, or a list item chosen by (field, value)


def _split_key(key: str) -> tuple[Segment, ...]:
    """`releases[name=cert-manager].version` -> ("releases", ("name", "cert-manager"), "version")."""
    parts: list[Segment] = []
    pos = 0
    while key:
        m = _SEGMENT_RE.match(key, pos)
        if m is None or m.group(1) != m.group(1).strip():
            break
        parts.append(m.group(1))
        parts += [(f, v) for f, v in _SELECTOR_RE.findall(m.group(2))]
        pos = m.end()
        if pos == len(key):
            return tuple(parts)
        if key[pos] != ".":
            break
        pos += 1
    raise PinError(
        f"invalid pin key {key[:60]!r}: expected a dotted path like loki.chartVersion"
        " or releases[name=cert-manager].version"
    )


def _item_fields(text: str, lines: list[_KeyLine]) -> dict[str, dict[str, str]]:
    """Each list item's scalar fields (`[]3` -> {"name": "cert-manager", ...})."""
    fields: dict[str, dict[str, str]] = {}
    for kl in lines:
        if len(kl.path) >= 2 and kl.path[-2].startswith(ITEM):
            try:
                value = _value_span(text, kl, kl.path[-1]).value
            except PinError:
                continue
            fields.setdefault(kl.path[-2], {})[kl.path[-1]] = value
    return fields


def _matches(
    path: tuple[str, ...], want: tuple[Segment, ...], items: dict[str, dict[str, str]]
) -> bool:
    if len(path) != len(want):
        return False
    for have, seg in zip(path, want, strict=True):
        if isinstance(seg, str):
            if have != seg or have.startswith(ITEM):
                return False
        elif not have.startswith(ITEM) or items.get(have, {}).get(seg[0]) != seg[1]:
            return False
    return True


def _value_span(text: str, kl: _KeyLine, key: str) -> PinSpan:
    """The scalar value token on a key line (without quotes), or PinError if there is none."""
    pos = kl.value_start
    end = kl.line_end
    while pos < end and text[pos] in " \t":
        pos += 1
    where = f"{key} (line {kl.line_no})"
    if pos >= end or text[pos] == "#":
        raise PinError(f"{where} has no value on its line (a mapping or empty), not a scalar")
    first = text[pos]
    if first in "\"'":
        close = _closing_quote(text, pos, end)
        if close is None:
            raise PinError(f"{where} has an unterminated quoted value")
        after = text[close + 1 : end].lstrip(" \t")
        if after and not after.startswith("#"):
            raise PinError(f"{where} has unexpected text after its quoted value")
        value = text[pos + 1 : close]
        if ("\\" in value and first == '"') or ("''" in value and first == "'"):
            raise PinError(f"{where} has an escaped quoted value; edit it by hand")
        return PinSpan(line_no=kl.line_no, start=pos + 1, end=close, value=value)
    if first in "{[&*!|>%@`" or text.startswith("{{", pos):
        raise PinError(f"{where} is not a plain scalar value")
    stop = end
    comment = re.search(r"[ \t]#", text[pos:end])
    if comment is not None:
        stop = pos + comment.start()
    while stop > pos and text[stop - 1] in " \t":
        stop -= 1
    value = text[pos:stop]
    if "{{" in value:
        raise PinError(f"{where} is a template expression, not a plain scalar value")
    return PinSpan(line_no=kl.line_no, start=pos, end=stop, value=value)


def _closing_quote(text: str, pos: int, end: int) -> int | None:
    quote = text[pos]
    i = pos + 1
    while i < end:
        c = text[i]
        if quote == '"' and c == "\\":
            i += 2
            continue
        if c == quote:
            if quote == "'" and i + 1 < end and text[i + 1] == "'":
                i += 2
                continue
            return i
        i += 1
    return None


def locate_pin(text: str, key: str) -> PinSpan:
    """Find the one scalar value of the dotted `key`; PinError if missing, repeated or not scalar."""
    path = _split_key(key)
    lines = list(_scan(text))
    items = _item_fields(text, lines) if any(not isinstance(p, str) for p in path) else {}
    found = [kl for kl in lines if _matches(kl.path, path, items)]
    if not found:
        elsewhere = sorted(
            {
                ".".join(kl.path)
                for kl in lines
                if kl.path[-1] == path[-1] and not any(p.startswith(ITEM) for p in kl.path)
            }
        )
        hint = f" (found {', '.join(elsewhere[:3])})" if elsewhere else ""
        raise PinError(f"pin key {key} not found{hint}")
    if len(found) > 1:
        where = ", ".join(str(kl.line_no) for kl in found[:5])
        raise PinError(
            f"pin key {key} appears {len(found)} times (lines {where}); refusing to guess"
        )
    return _value_span(text, found[0], key)


def read_pin(text: str, key: str) -> str:
    """The current value of the pin `key`."""
    return locate_pin(text, key).value


def replace_pin(text: str, key: str, new_value: str) -> str:
    """`text` with only the value of pin `key` replaced by `new_value`; every other byte kept."""
    if not isinstance(new_value, str) or _NEW_VALUE_RE.fullmatch(new_value) is None:
        raise PinError(
            f"refusing to pin {str(new_value)[:60]!r}: only letters, digits and . _ + - allowed"
        )
    span = locate_pin(text, key)
    return text[: span.start] + new_value + text[span.end :]


def _check_name(kind: str, name: str) -> None:
    if _NAME_RE.fullmatch(name) is None or ".." in name:
        raise PinError(f"invalid {kind} name {name[:60]!r}")


def pin_file_candidates(template: str, component: str, env: str) -> list[str]:
    """Repo-relative paths that may hold the pin: the rendered template and its `.gotmpl` twin."""
    _check_name("component", component)
    _check_name("environment", env)
    rendered = template.replace("{component}", component).replace("{env}", env)
    leftover = _PLACEHOLDER_RE.search(rendered)
    if leftover is not None:
        raise PinError(
            f"pin file template {template[:80]!r} has an unknown placeholder {leftover.group()}"
        )
    if "\\" in rendered or "\x00" in rendered or not rendered.strip():
        raise PinError(f"invalid pin file template {template[:80]!r}")
    if rendered.startswith("/"):
        raise PinError(f"pin file template {template[:80]!r} must be a path relative to the repo")
    path = posixpath.normpath(rendered)
    if path in (".", "..") or path.startswith("../") or path.startswith("/"):
        raise PinError(f"pin file template {template[:80]!r} points outside the control repo")
    if path.endswith((".yaml", ".yml")):
        return [path, path + ".gotmpl"]
    return [path]


def _diff_lines(text: str) -> list[str]:
    """Lines for difflib: each ends with exactly `\\n`; a missing final newline is marked."""
    out: list[str] = []
    for _, start, end in _lines(text):
        out.append(text[start:end] + "\n")
    if out and not text.endswith("\n"):
        out[-1] = out[-1] + "\\ No newline at end of file\n"
    return out


def pin_diff(path: str, old_text: str, new_text: str, *, context: int = 1) -> str:
    """A unified diff of one pin file, headed `a/<path>` and `b/<path>`; "" when unchanged."""
    return "".join(
        difflib.unified_diff(
            _diff_lines(old_text),
            _diff_lines(new_text),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
            n=context,
        )
    )
