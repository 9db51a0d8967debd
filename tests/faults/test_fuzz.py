"""Fuzzed webhooks and chat lines (hypothesis, bounded): no 5xx, no crash, short replies.

Webhooks go to a real `deploybot run` subprocess over HTTP (one process for all examples;
no 5xx, the process alive and no traceback in its log). Chat lines go through whole console
sessions of the real app, 10 fuzzed lines each, each followed by a marker line whose reply
ends its output, so every line's replies are judged alone: at most three lines ("working on
it" aside), no "internal error", no exception logged. Examples are few (this runs in `make
test`: 40 webhooks, 4 sessions); `FUZZ_EXAMPLES=10000` runs 10,000 webhooks and 1,000
sessions (10,000 lines), 7 to 9 minutes on 2 cores (README, Testing).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config.model import load_config
from bot.demo.setup import prepare
from tests.support.real import deploybot
from tests.support.session import console_session, free_port

pytestmark = pytest.mark.faults
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
ROOT = Path(__file__).resolve().parents[2]
SECRET = "fuzz-webhook-secret-0123"
KINDS = ["Pipeline Hook", "Merge Request Hook", "Push Hook", "Tag Push Hook", "Job Hook",
         "Deployment Hook", "", "Pipeline Hook\u00e9"]  # fmt: skip
FIELDS = ["object_kind", "object_attributes", "project", "id", "iid", "sha", "ref", "status",
          "stages", "builds", "merge_request", "user", "commit", "action", "state", "tag",
          "duration", "source", "target_branch", "source_branch", "project_id"]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False), st.text(max_size=40),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6),
    ),
    max_leaves=30,
)
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)


@pytest.fixture(scope="module")
def bot_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("fuzzbot")
    port = free_port()
    config_path = asyncio.run(prepare(tmp / "demo", listen=f"127.0.0.1:{port}"))
    data = yaml.safe_load(config_path.read_text())
    data["chat"].pop("console", None)
    data["monitors"] = {"enabled": False}
    data["gitlab"] = {"url": "http://127.0.0.1:9", "webhook_secret_env": "FUZZ_SECRET"}
    config_path.write_text(yaml.safe_dump(data))
    log = (tmp / "bot.log").open("wb")
    proc = subprocess.Popen(
        [*deploybot(), "run", "-c", str(config_path)],
        cwd=ROOT, env={**os.environ, "FUZZ_SECRET": SECRET}, stdout=log, stderr=log,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)  # another process starting up
        yield url
        assert proc.poll() is None, "the bot died"
        text = (tmp / "bot.log").read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]
    finally:
        proc.kill()
        proc.wait()
        log.close()


def post(url: str, body: bytes, kind: str) -> int:
    request = urllib.request.Request(
        url + "/webhooks/gitlab", data=body, method="POST",
        headers={"X-Gitlab-Token": SECRET, "X-Gitlab-Event": kind.encode().decode("latin-1"),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(body=bodies, kind=st.sampled_from(KINDS), raw=st.booleans())
def test_fuzzed_webhooks_never_get_a_5xx(bot_url: str, body: dict[str, Any], kind: str,
                                         raw: bool) -> None:  # fmt: skip
    data = json.dumps(body).encode()
    if raw:  # mangled: truncated and with invalid UTF-8
        data = data[: len(data) // 2] + b"\xff\xfe"
    status = post(bot_url, data, kind)
    assert status in (200, 400, 401, 413), status
    with urllib.request.urlopen(bot_url + "/healthz", timeout=10) as response:
        assert response.status == 200


commands_ = st.sampled_from(["!help", "!whoami", "!status", "!where", "!diff", "!deploy",
                             "!apply", "!rollback", "!lock", "!unlock", "!log", "!sal",
                             "!promote", "deploybot:", "!"])  # fmt: skip
words = st.one_of(
    st.sampled_from(["builds-api", "jobs-api", "tools", "toolsbeta", "latest", "previous",
                     "mr1", "--emergency", "--force", "to", "T123", "0.0.1-1-aaaaaaaa"]),
    st.text(max_size=30),
)  # fmt: skip
chat_lines = st.builds(lambda c, ws: " ".join([c, *ws]), commands_,
                       st.lists(words, max_size=5))  # fmt: skip


class _Tracebacks(logging.Handler):
    """Collects log records that carry an exception: a fuzzed line that crashed something."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


WORKING = re.compile(r"^\w+: working on it…$")


def per_line(out: list[str], count: int) -> list[list[str]]:
    """Split a session's output at the markers (`no command 'fuzzmark<n>'`) into what each
    of the `count` fuzzed lines printed (the console runs its lines one after the other)."""
    segments: list[list[str]] = [[]]
    for line in out:
        if line.startswith(f"no command 'fuzzmark{len(segments) - 1}'"):
            segments.append([])
        else:
            segments[-1].append(line)
    assert len(segments) == count + 1, f"markers missing: {out}"
    return segments[:count]


@settings(max_examples=max(3, EXAMPLES // 10), deadline=None)
@given(lines=st.lists(chat_lines, min_size=10, max_size=10))
def test_fuzzed_chat_lines_never_crash_and_replies_stay_short(
    lines: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("fuzzchat")
    config_path = asyncio.run(prepare(tmp / "demo", listen=f"127.0.0.1:{free_port()}"))
    data = yaml.safe_load(config_path.read_text())
    data["monitors"] = {"enabled": False}
    config_path.write_text(yaml.safe_dump(data))
    safe = [line.replace("\n", " ").replace("\r", " ") for line in lines]
    script = [x for n, line in enumerate(safe) for x in (line, f"!help fuzzmark{n}")]
    crashes = _Tracebacks()
    logging.getLogger().addHandler(crashes)
    try:
        out = asyncio.run(console_session(load_config(config_path), script))
    finally:
        logging.getLogger().removeHandler(crashes)
    assert not crashes.records, [r.getMessage() for r in crashes.records]
    assert all(len(line.encode()) <= 1000 for line in out)
    for line, printed in zip(safe, per_line(out, len(safe)), strict=True):
        replies = [r for r in printed if not r.startswith("[#") and not WORKING.match(r)]
        assert not [r for r in replies if "internal error" in r], (line, printed)
        assert len(replies) <= 3, (line, printed)  # one to three lines (SPEC), ack aside
