"""Prometheus metrics of one bot instance (its own registry: no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
        self.lines_sent = Counter("deploybot_chat_lines_sent", "Chat lines sent", registry=r)
        self.queue_depth = Gauge("deploybot_queue_depth", "Items waiting", ["queue"], registry=r)
        self.chat_connected = Gauge(
            "deploybot_chat_connected", "1 while a chat adapter is connected", ["adapter"],
            registry=r,
        )  # fmt: skip
        self.alerts = Gauge(
            "deploybot_monitor_alerts", "Active monitor alerts", ["kind"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
