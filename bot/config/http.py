"""The `http:` section of the config: where the server listens, its limits, and who may read
the pages."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bot.config.base import Model


class HttpAuthConfig(Model):
    """Who may read the pages: a bearer token (or the login form's cookie), or an identity
    an authenticating proxy puts in a header, checked against `auth.rules`."""

    token_env: str | None = None
    token_file: str | None = None
    trusted_header: str | None = None  # e.g. X-Forwarded-User; identity `http:<value>`

    @model_validator(mode="after")
    def _one_way(self) -> HttpAuthConfig:
        if [bool(self.token_env or self.token_file), bool(self.trusted_header)].count(True) != 1:
            raise ValueError("give token_env (or token_file) or trusted_header, or say none")
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(value: Any) -> Any:
    """`HOST:PORT` or a clear line saying so (`listen: 8080` is a YAML number)."""
    if value is None:
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:{value}), not {value!r}")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:8080), not {value!r}")
    return value


def _host(listen: str) -> str:
    return listen.rpartition(":")[0].strip("[]")


class HttpConfig(Model):
    listen: str = "127.0.0.1:8080"
    # a second listener for the pages (behind the proxy); `listen` then serves only the
    # webhook, health, readiness and metrics
    pages_listen: str | None = None
    # peers (addresses or CIDRs) whose `trusted_header` and X-Forwarded-Proto are believed
    trusted_proxies: list[str] = []
    max_body_bytes: int = Field(1_048_576, gt=0)
    max_connections: int = Field(256, ge=8, description="more get an immediate 503")
    header_timeout: float = Field(10.0, gt=0, description="seconds to send a request head")
    body_timeout: float = Field(30.0, gt=0, description="seconds to send a webhook body")
    ready_max_event_age: float = Field(
        120.0, gt=0, description="/ready is 503 while a webhook event waits longer than this"
    )
    auth: Literal["none"] | HttpAuthConfig = "none"
    # where a SAL task id (T123) links to; {task} is replaced by the id
    task_url: str = "https://phabricator.wikimedia.org/{task}"

    @model_validator(mode="after")
    def _open_only_on_loopback(self) -> HttpConfig:
        where = "pages_listen" if self.pages_listen else "listen"
        if self.auth == "none" and not is_loopback(self.pages_host):
            raise ValueError(
                f"auth: none is only allowed when {where} is on loopback, not"
                f" {self.pages_host}; set http.auth.token_env or http.auth.trusted_header"
            )
        if self.pages_listen and self.pages_listen.rpartition(":")[2] == str(self.port):
            raise ValueError("pages_listen needs a port other than listen's")
        if self.auth != "none" and self.auth.trusted_header and not self.trusted_proxies:
            raise ValueError(
                f"auth.trusted_header {self.auth.trusted_header} is believed only from"
                " http.trusted_proxies: list the proxy's addresses (e.g. [10.64.0.0/16])"
            )
        return self

    @field_validator("listen", "pages_listen", mode="before")
    @classmethod
    def _listen(cls, v: Any) -> Any:
        return _host_port(v)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or CIDR") from None
        return v

    def is_trusted_proxy(self, peer: str | None) -> bool:
        """Is `peer` (an address) one of `trusted_proxies`?"""
        if not peer or not self.trusted_proxies:
            return False
        try:
            addr = ipaddress.ip_address(peer.partition("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in ipaddress.ip_network(net, strict=False) for net in self.trusted_proxies)

    @property
    def host(self) -> str:
        return _host(self.listen)

    @property
    def pages_host(self) -> str:
        """Where the pages are served: `pages_listen` when set, else `listen`."""
        return _host(self.pages_listen or self.listen)

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])
