"""The `http:` section of the config: where the server listens, its limits, and who may read
the pages."""

from __future__ import annotations

import ipaddress
from typing import Literal

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


class HttpConfig(Model):
    listen: str = "127.0.0.1:8080"
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
        if self.auth == "none" and not is_loopback(self.host):
            raise ValueError(
                f"auth: none is only allowed when listen is on loopback, not {self.host};"
                " set http.auth.token_env or http.auth.trusted_header"
            )
        return self

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected host:port")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])
