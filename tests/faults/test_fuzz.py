"""Fuzzed webhooks and chat lines (hypothesis, bounded): no 5xx, no crash, short replies.

Webhooks go to a real `deploybot run` subprocess over HTTP; chat lines go through a whole
console session of the real app. Examples are few (this runs in `make test`); raise
`FUZZ_EXAMPLES` locally for a longer hunt.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
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

from bot.core.config import load_config
from bot.demo.setup import prepare
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
        [sys.executable, "-m", "bot.cli", "run", "-c", str(config_path)],
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
    out = asyncio.run(console_session(load_config(config_path), safe))
    replies = [line for line in out if not line.startswith("[#")]
    assert replies, "the session answered"
    assert not [line for line in replies if "internal error" in line], replies
    assert all(len(line.encode()) <= 1000 for line in out)
    assert len(replies) <= 4 * len(safe)  # "working on it" plus at most three lines each
