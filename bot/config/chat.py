"""The `chat:` section of the config: IRC, XMPP and console connections."""

from __future__ import annotations

from pydantic import Field

from bot.config.base import Model


class SaslConfig(Model):
    username: str
    password_env: str | None = None
    password_file: str | None = None


class KeepaliveConfig(Model):
    """Dead-link detection and (re)join pacing, the same keys on every chat connection."""

    ping_interval: float = Field(30.0, gt=0, description="idle seconds before a ping")
    ping_timeout: float = Field(10.0, gt=0, description="seconds a ping may go unanswered")
    join_retry: float = Field(5.0, gt=0, description="first retry of a failed join (doubles)")
    join_retry_max: float = Field(60.0, gt=0, description="longest wait between join retries")


class NetworkFlood(Model):
    """What one IRC server reads from a connection without delay, across all its channels.
    Unset, the bot picks it from the server software it registers with (bot.chat.pacing)."""

    burst: int = Field(5, ge=1)
    per_second: float = Field(1.0, gt=0)


class IrcConfig(KeepaliveConfig):
    host: str
    port: int = 6697
    tls: bool = True
    nick: str | None = None
    realname: str = "deploybot"
    channels: list[str] = []
    sasl: SaslConfig | None = None
    flood: NetworkFlood | None = None  # None: chosen from the server's software


class XmppConfig(KeepaliveConfig):
    jid: str
    password_env: str | None = None
    password_file: str | None = None
    host: str | None = None
    port: int = 5222
    tls: bool = True
    nick: str | None = None
    rooms: list[str] = []


class ConsoleConfig(Model):
    pass


class ChatConfig(Model):
    default_room: str = "#deploybot"
    irc: IrcConfig | None = None
    xmpp: XmppConfig | None = None
    console: ConsoleConfig | None = None
