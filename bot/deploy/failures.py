"""What a failed deploy says: the meaningful line of the command's output, and a hint.

A failed helm/helmfile run ends with noise (a traceback's caret line, "exit status 1", a
blank line); the line people need is the `Error:` line above it, helm's reason. Known helm
and Kubernetes failures get a short hint that ends with the next command. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_ERROR_RE = re.compile(r"^\s*(?:error|upgrade failed|fatal|err)\s*:", re.I)
_NOISE_RE = re.compile(r"^[\s^~|`'\"\-=*.]*$")
_TRACE_RE = re.compile(r"^\s*(File \"|Traceback \(most recent call last\)|at |\s*\^)")
# helm's client lost the API server: a dropped connection or a request past its deadline
_LOST_API = re.compile(r"(?<![A-Za-z])EOF\b|context deadline exceeded")
_EXIT_STATUS_RE = re.compile(r"^\s*(exit status \d+|command exited|make: \*\*\*)", re.I)


def meaningful_line(lines: Sequence[str]) -> str:
    """The line that explains a failure: the last `Error:`-like line, else the last line
    that is not a caret, a traceback frame or an exit status."""
    for line in reversed(lines):
        if _ERROR_RE.match(line):
            return line.strip()
    for line in reversed(lines):
        if _NOISE_RE.match(line) or _TRACE_RE.match(line) or _EXIT_STATUS_RE.match(line):
            continue
        return line.strip()
    return ""


# (what the failure text says, what to tell people; {rollback}/{apply}/{status}/{log} filled)
_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"has no deployed releases", re.I),
        "the release's first install failed and helm will not upgrade it: check "
        "{status}, then {emergency} or uninstall it and {apply}",
    ),
    (
        re.compile(
            r"another operation \(install/upgrade/rollback\) is in progress|"
            r"another operation .*in progress",
            re.I,
        ),  # fmt: skip
        "an earlier helm operation is still pending (or was killed): check {status}, "
        "then {emergency} to get back to the last deployed revision",
    ),
    (
        re.compile(r"ImagePullBackOff|ErrImagePull", re.I),
        "the image cannot be pulled (gone from the registry, or a typo in the tag): {rollback}",
    ),
    (
        re.compile(r"CrashLoopBackOff", re.I),
        "the new pods crash on start: read {log}, then {rollback}",
    ),
    (
        _LOST_API,
        "helm lost the Kubernetes API mid-run (an API server under load?); the release may"
        " have changed: {retry}",
    ),
    (
        re.compile(r"timed out waiting for the condition", re.I),
        "pods did not become ready in time: check {status}, read {log}, then {rollback}",
    ),
)


def lost_api(detail: str) -> bool:
    """Did helm lose the Kubernetes API (EOF, context deadline exceeded)? Its hint ends with
    the planner's step for the environment (`retry` of `hint`)."""
    return bool(_LOST_API.search(detail))


def hint(
    detail: str, component: str, env: str, prefix: str = "!", retry: str | None = None
) -> str | None:
    """A short hint with the next command for a known helm/Kubernetes failure, else None.
    `retry`: the planner's step after a lost API (default: check, then apply again)."""
    status = f"{prefix}status {component} {env}"
    apply = f"{prefix}apply {component} {env}"
    for pattern, text in _HINTS:
        if pattern.search(detail):
            return "hint: " + text.format(
                status=status,
                rollback=f"{prefix}rollback {component} {env}",
                emergency=f"{prefix}rollback {component} {env} --emergency",
                apply=apply,
                log="the log",
                retry=retry or f"check {status}, then {apply} to retry",
            )
    return None
