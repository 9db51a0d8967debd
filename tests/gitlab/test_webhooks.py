"""POST /webhooks/gitlab on the real app: verification, limits, dedupe, durability, metrics.

The bot runs in-process with the console adapter (its stdout is what reaches chat) and the
tests speak HTTP to its real port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path

import pytest
import yaml

from bot.config.model import Config
from bot.store.db import store_from_config
from tests.support.botproc import pipeline_hook
from tests.support.webhookbot import SECRET, RunningBot, config_with, fixture, metric

pytestmark = pytest.mark.both_engines  # the store behind these runs on SQLite and PostgreSQL


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", SECRET)
    return "DEPLOYBOT_TEST_WEBHOOK_SECRET"


@pytest.fixture
def config(demo_config_path: Path, secret_env: str) -> Config:
    # a GitLab URL nobody listens on: these tests never need the API
    return config_with(
        demo_config_path,
        gitlab={"url": "http://127.0.0.1:9", "webhook_secret_env": secret_env},
    )


async def test_forged_or_missing_token_gets_401_and_nothing_is_stored(config: Config) -> None:
    async with RunningBot(config) as bot:
        assert (await bot.post(fixture("pipeline_created.json"), token="forged"))[0] == 401
        assert (await bot.post(fixture("pipeline_created.json"), token=None))[0] == 401
        assert await bot.events() == []
        status, _ = await bot.post(fixture("pipeline_created.json"))
        assert status == 200
        assert len(await bot.events()) == 1
        await bot.settle()
    assert len([line for line in bot.lines() if "731205" in line]) == 1


async def raw_post(config: Config, body: bytes, chunked: bool, whole: bool = False) -> int:
    """POST over a plain socket, like GitLab's client: send everything, read the status, close.
    `whole`: head and (chunked) body in one write, so the request arrives complete."""
    host, port = config.http.host, config.http.port
    reader, writer = await asyncio.open_connection(host, port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = (
        f"POST /webhooks/gitlab HTTP/1.1\r\nHost: {host}\r\nX-Gitlab-Event: Pipeline Hook\r\n"
        f"X-Gitlab-Token: {SECRET}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    try:
        if whole:  # one write: the request arrives complete
            writer.write(head + (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body))
        elif chunked:
            writer.write(head)
            for start in range(0, len(body), 1 << 20):
                chunk = body[start : start + (1 << 20)]
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(head + body)
        await writer.drain()
    except ConnectionError:
        pass  # the server may answer and close before the whole body went out
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_ten_megabyte_body_gets_413(config: Config, chunked: bool) -> None:
    body = b"{" + b" " * (10 * 1024 * 1024) + b"}"
    async with RunningBot(config) as bot:
        assert await raw_post(config, body, chunked) == 413
        assert await bot.events() == []
        assert metric(await bot.metrics(), "deploybot_webhook_rejected_total",
                      reason="too_large") == 1  # fmt: skip


async def test_a_chunked_body_that_arrives_whole_is_held_to_the_limit(
    demo_config_path: Path, secret_env: str
) -> None:
    """A delivery whose body came with its head is read without waiting; the size limit
    still holds for a chunked one (no Content-Length to refuse it by)."""
    body = json.dumps(fixture("pipeline_created.json")).encode()
    http = yaml.safe_load(demo_config_path.read_text())["http"]
    gitlab = {"url": "http://127.0.0.1:9", "webhook_secret_env": secret_env}
    for limit, status in ((len(body) - 1, 413), (len(body), 200)):
        config = config_with(demo_config_path, gitlab=gitlab,
                             http={**http, "max_body_bytes": limit})  # fmt: skip
        async with RunningBot(config) as bot:
            assert await raw_post(config, body, chunked=True, whole=True) == status
            assert [bytes(e["body"]) for e in await bot.events()] == (
                [body] if status == 200 else []
            )


async def test_garbage_gets_400(config: Config) -> None:
    async with RunningBot(config) as bot:
        assert (await bot.post(b"\x00\xffnot json {"))[0] == 400
        assert (await bot.post(b'{"object_kind": "pipeline"'))[0] == 400
        assert await bot.events() == []
        assert (
            metric(await bot.metrics(), "deploybot_webhook_rejected_total", reason="bad_json") == 2
        )


async def test_unknown_kind_is_answered_200_counted_and_ignored(config: Config) -> None:
    async with RunningBot(config) as bot:
        status, _ = await bot.post({"object_kind": "note", "note": "hi"}, kind="Note Hook")
        assert status == 200
        assert await bot.events() == []
        text = await bot.metrics()
        assert metric(text, "deploybot_webhook_events_received_total", kind="unknown") == 1
        assert metric(text, "deploybot_webhook_events_processed_total",
                      kind="unknown", result="ignored") == 1  # fmt: skip


async def test_duplicate_delivery_is_stored_and_announced_once(config: Config) -> None:
    body = fixture("pipeline_running_stage2.json")
    async with RunningBot(config) as bot:
        for _ in range(3):
            status, _ = await bot.post(body, X_Gitlab_Event_UUID="7d5c1f0e-uuid-1")
            assert status == 200
        # Idempotency-Key wins over the event UUID: a retry may carry a new UUID
        for uuid in ("a", "b"):
            status, _ = await bot.post(
                fixture("pipeline_failed.json"), Idempotency_Key="retry-1", X_Gitlab_Event_UUID=uuid
            )
            assert status == 200
        await bot.settle()
        assert len(await bot.events()) == 2
        text = await bot.metrics()
    stage = [line for line in bot.lines() if "stage 2/3 test" in line]
    failed = [line for line in bot.lines() if "731205" in line and "failed" in line]
    assert len(stage) == 1 and len(failed) == 1, bot.lines()
    assert metric(text, "deploybot_webhook_events_deduped_total") == 3
    assert metric(text, "deploybot_webhook_events_received_total", kind="pipeline") == 2
    assert metric(text, "deploybot_webhook_events_processed_total",
                  kind="pipeline", result="handled") == 2  # fmt: skip


async def test_deliveries_arriving_together_are_each_stored_once(config: Config) -> None:
    """GitLab retrying while the first delivery is still being stored: concurrent posts
    share one commit, and of those with one key exactly one is stored and announced."""
    running, failed = fixture("pipeline_running_stage2.json"), fixture("pipeline_failed.json")
    async with RunningBot(config) as bot:
        answers = await asyncio.gather(
            *(bot.post(running, X_Gitlab_Event_UUID="same-uuid") for _ in range(6)),
            *(bot.post(failed) for _ in range(2)),  # no key: each one is a new event
        )
        assert [status for status, _ in answers] == [200] * 8
        assert sorted(text for _, text in answers[:6]) == ["duplicate: already received\n"] * 5 + [
            "stored\n"
        ]
        await bot.settle()
        rows = await bot.events()
        text = await bot.metrics()
    assert sorted(r["dedupe_key"] or "-" for r in rows) == ["-", "-", "same-uuid"]
    assert len([line for line in bot.lines() if "stage 2/3 test" in line]) == 1, bot.lines()
    assert metric(text, "deploybot_webhook_events_deduped_total") == 5


async def test_pipeline_without_stages_is_stored_marked_malformed_and_harmless(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="deploybot.events")
    async with RunningBot(config) as bot:
        status, _ = await bot.post(fixture("pipeline_no_stages.json"))
        assert status == 200
        await bot.settle()
        rows = await bot.events()
        assert [(r["status"], r["error"]) for r in rows] == [
            ("malformed", "object_attributes.stages: missing")
        ]
        # the bot keeps working: the next event is announced
        assert (await bot.post(fixture("pipeline_running_stage2.json")))[0] == 200
        await bot.wait_line(r"builds-api: pipeline 731205 .*stage 2/3 test")
        text = await bot.metrics()
    assert metric(text, "deploybot_webhook_events_processed_total",
                  kind="pipeline", result="malformed") == 1  # fmt: skip
    logged = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(logged) == 1


async def test_event_left_pending_by_a_crash_is_processed_on_start(config: Config) -> None:
    store = store_from_config(config)
    await store.open()
    body = json.dumps(fixture("pipeline_running_stage2.json")).encode()
    await store.execute(
        "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES (?, ?, ?, ?)",
        ("uuid-before-crash", "Pipeline Hook", body, time.time()),
    )
    await store.close()
    async with RunningBot(config) as bot:
        await bot.wait_line(r"pipeline 731205 .*stage 2/3 test")
        await bot.settle()
        assert [r["status"] for r in await bot.events()] == ["processed"]
        # the dedupe key survived the restart too
        await bot.post(
            fixture("pipeline_running_stage2.json"), X_Gitlab_Event_UUID="uuid-before-crash"
        )
        assert metric(await bot.metrics(), "deploybot_webhook_events_deduped_total") == 1


async def test_a_backlog_of_pipeline_updates_says_newer_states_only_and_every_final(
    config: Config,
) -> None:
    """A backlog of one commit's pipeline updates (left by a crash here; a burst acked before
    it is handled is the same): each pipeline's latest state is said, never an older one
    after a newer (the stage delivered late is not said), and both finals of a retried
    pipeline are, in order; the skipped updates are marked superseded, none stays pending."""
    retried, other = 731300, 731301
    updates = [(retried, "pending", 1), (other, "pending", 1)]
    updates += [(retried, "running", s) for s in (1, 1, 1, 2, 2, 2, 3, 3, 3)]
    updates += [(other, "running", 2)] * 8
    updates += [(retried, "running", 1), (retried, "failed", 3), (retried, "running", 2)]
    updates += [(retried, "success", 3)]
    bodies = [pipeline_hook(pid, status, stage) for pid, status, stage in updates]
    # a third pipeline's stage updates, then an update that cannot be handled (malformed):
    # it covers nothing, so its last good state is still said
    bodies += [pipeline_hook(731302, "running", 2) for _ in range(4)]
    broken = pipeline_hook(731302, "success", 3)
    broken["builds"][0]["name"] = 5
    bodies.append(broken)
    store = store_from_config(config)
    await store.open()
    for n, body in enumerate(bodies):
        await store.execute(
            "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES (?, ?, ?, ?)",
            (f"burst-{n}", "Pipeline Hook", json.dumps(body).encode(), time.time()),
        )
    await store.close()
    async with RunningBot(config) as bot:
        await bot.settle()
        statuses = [r["status"] for r in await bot.events()]
        text = await bot.metrics()
    said = {
        pid: [found[1] for line in bot.lines()
              if (found := re.search(rf"pipeline {pid} on main \(\w+\): (stage \S+ \w+|\w+)", line))]
        for pid in (retried, other, 731302)
    }  # fmt: skip
    assert said == {
        retried: ["failed", "success"],
        other: ["stage 2/3 test"],
        731302: ["stage 2/3 test"],
    }, bot.lines()
    skipped = len(updates) - 3
    assert statuses.count("superseded") == skipped and statuses.count("malformed") == 1
    assert statuses.count("processed") == 3 + 4 and "pending" not in statuses
    assert metric(text, "deploybot_webhook_events_processed_total",
                  kind="pipeline", result="superseded") == skipped  # fmt: skip


async def test_without_a_backlog_a_repeated_state_is_skipped_and_every_stage_is_said(
    config: Config,
) -> None:
    """A few updates queued together (no backlog): an update that a later one repeats (the
    same status and stage: GitLab sends "running" again as jobs move) is marked superseded
    and not handled twice; each new stage is said, in order."""
    pid = 731400
    updates = [("running", 1), ("running", 1), ("running", 2), ("running", 2), ("running", 3)]
    updates += [("success", 3), ("success", 3)]
    store = store_from_config(config)
    await store.open()
    for n, (status, stage) in enumerate(updates):
        body = json.dumps(pipeline_hook(pid, status, stage)).encode()
        await store.execute(
            "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES (?, ?, ?, ?)",
            (f"few-{n}", "Pipeline Hook", body, time.time()),
        )
    await store.close()
    async with RunningBot(config) as bot:
        await bot.settle()
        statuses = [r["status"] for r in await bot.events()]
    said = [found[1] for line in bot.lines()
            if (found := re.search(rf"pipeline {pid} on main \(\w+\): (stage \S+ \w+|\w+)", line))]  # fmt: skip
    assert said == ["stage 1/3 build", "stage 2/3 test", "stage 3/3 publish", "success"], said
    assert statuses == ["superseded", "processed"] * 2 + ["processed", "superseded", "processed"]


async def test_secret_named_but_missing_refuses_everything(
    demo_config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEPLOYBOT_TEST_UNSET_SECRET", raising=False)
    cfg = config_with(
        demo_config_path,
        gitlab={"url": "http://127.0.0.1:9", "webhook_secret_env": "DEPLOYBOT_TEST_UNSET_SECRET"},
    )
    async with RunningBot(cfg) as bot:
        assert (await bot.post(fixture("pipeline_created.json"), token=None))[0] == 401
        assert (await bot.post(fixture("pipeline_created.json"), token=""))[0] == 401
        assert await bot.events() == []


async def test_without_a_secret_configured_deliveries_are_accepted(demo_config_path: Path) -> None:
    cfg = config_with(demo_config_path)  # the demo: no gitlab section at all
    async with RunningBot(cfg) as bot:
        assert (await bot.post(fixture("pipeline_tag_success.json"), token=None))[0] == 200
        await bot.wait_line(r"pipeline 731230 on tag 0\.0\.131 \(322f874b\): success")
