"""Prometheus metrics of one bot instance (its own registry: no global state)."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from bot import __version__

# seconds: fast webhook acks up to slow deploys
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_DEPLOY_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(standard)  # process_*, python_info, python_gc_*
        Info("deploybot_build", "The running deploybot", registry=r).info({"version": __version__})
        self.deploy_duration = Histogram(
            "deploybot_deploy_duration_seconds", "Deploys from start to end",
            ["component", "env", "result"], buckets=_DEPLOY_BUCKETS, registry=r,
        )  # fmt: skip
        self.webhook_ack = Histogram(
            "deploybot_webhook_ack_seconds", "Webhook request to answer (stored or refused)",
            buckets=_ACK_BUCKETS, registry=r,
        )  # fmt: skip
        self.announcement_lag = Histogram(
            "deploybot_announcement_lag_seconds", "A chat line's time from queued to sent",
            buckets=_LAG_BUCKETS, registry=r,
        )  # fmt: skip
        self.events_received = Counter(
            "deploybot_webhook_events_received", "Webhook deliveries accepted", ["kind"], registry=r
        )
        self.events_processed = Counter(
            "deploybot_webhook_events_processed", "Webhook events handled", ["kind", "result"],
            registry=r,
        )  # fmt: skip
        self.events_deduped = Counter(
            "deploybot_webhook_events_deduped", "Duplicate webhook deliveries", registry=r
        )
        self.webhook_rejected = Counter(
            "deploybot_webhook_rejected", "Webhook requests refused", ["reason"], registry=r
        )
        self.commands = Counter(
            "deploybot_commands", "Chat commands", ["command", "result"], registry=r
        )
        self.refusals = Counter(
            "deploybot_refusals", "Commands refused for lack of a role", ["command", "role"],
            registry=r,
        )  # fmt: skip
        self.deploys = Counter("deploybot_deploys", "Deploys by result", ["result"], registry=r)
        self.leader = Gauge("deploybot_leader", "1 on the leader, 0 on a standby", registry=r)
        self.store_up = Gauge(
            "deploybot_store_up", "1 while the store answers and can write", registry=r
        )
        self.lines_sent = Counter("deploybot_chat_lines_sent", "Chat lines sent", registry=r)
        self.queue_depth = Gauge("deploybot_queue_depth", "Items waiting", ["queue"], registry=r)
        self.oldest_event_age = Gauge(
            "deploybot_oldest_pending_event_age_seconds",
            "Seconds the oldest unprocessed webhook event has waited", registry=r,
        )  # fmt: skip
        self.chat_connected = Gauge(
            "deploybot_chat_connected", "1 while a chat adapter is connected", ["adapter"],
            registry=r,
        )  # fmt: skip
        self.rooms_joined = Gauge(
            "deploybot_chat_rooms_joined", "Configured chat rooms the bot is in now", ["adapter"],
            registry=r,
        )  # fmt: skip
        self.alerts = Gauge(
            "deploybot_monitor_alerts", "Active monitor alerts", ["kind"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sent(self, lags: list[float]) -> None:
        """The outbox sent one line carrying `lags` (seconds each item waited)."""
        self.lines_sent.inc()
        for lag in lags:
            self.announcement_lag.observe(lag)
