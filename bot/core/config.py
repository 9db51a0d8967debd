"""The typed configuration: pydantic models for the YAML file (its keys are the contract).

Loading reports every error with its YAML path (`components.builds-api.pins[0].key: ...`).
Secrets are never inline: only `*_env` (an environment variable name) or `*_file`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from bot.core.chatconfig import (
    ChatConfig,
    ConsoleConfig,
    IrcConfig,
    KeepaliveConfig,
    SaslConfig,
    XmppConfig,
)
from bot.core.configbase import NAME_RE, SECRET_WORDS, ConfigError, Model, read_secret
from bot.core.windows import parse_windows

__all__ = [
    "NAME_RE", "SECRET_WORDS", "ChatConfig", "ConfigError", "ConsoleConfig", "IrcConfig",
    "KeepaliveConfig", "Model", "SaslConfig", "XmppConfig", "read_secret",
]  # fmt: skip


class BotConfig(Model):
    nick: str = "deploybot"
    prefix: str = "!"
    state_dir: Path = Path("./var")
    public_url: str = "http://127.0.0.1:8080"
    reply_timeout: float = Field(0.8, gt=0, description="seconds before 'working on it'")


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
    max_body_bytes: int = 1_048_576
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


class GitlabConfig(Model):
    url: str
    token_env: str | None = None
    token_file: str | None = None
    webhook_secret_env: str | None = None
    webhook_secret_file: str | None = None
    mr_notes: bool = True
    announce_mr_pipelines: bool = False
    announce_branches: list[str] = []
    # the CI job log line that names the pushed image; groups registry, repo, version
    job_log_pattern: str = r"Pushed: (?P<registry>[^/\s]+)/(?P<repo>\S+):(?P<version>\S+)"

    @field_validator("job_log_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            compiled = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "version" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<version>...)")
        return v


class ControlRepoConfig(Model):
    forge: Literal["gitlab", "git"] = "git"
    project: str | None = None
    url: str | None = None
    branch: str = "main"
    merge_when_deployed: bool = False

    @model_validator(mode="after")
    def _source(self) -> ControlRepoConfig:
        if self.forge == "gitlab" and not self.project:
            raise ValueError("forge gitlab needs 'project'")
        if self.forge == "git" and not self.url:
            raise ValueError("forge git needs 'url'")
        return self


class RegistryConfig(Model):
    url: str
    kind: Literal["harbor", "oci"] = "oci"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    protect: bool = False
    protect_label: str = "deployed"


class EnvironmentConfig(Model):
    name: str
    kubeconfig: str | None = None
    kube_context: str | None = None
    sal_project: str | None = None
    requires: str | None = None
    deploy_before_merge: bool = True
    auto_apply: bool = False
    windows: list[str] = []
    # for demos and tests: live state read from this YAML file (release name -> chart
    # version) instead of a cluster; ignored when kubeconfig or kube_context is set
    live_file: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("environment names are lowercase letters, digits, . _ -")
        return v

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        parse_windows(v)  # a WindowError (ValueError) is reported with its YAML path
        return v


class PinConfig(Model):
    file: str = "components/{component}/values/{env}.yaml"
    key: str = "chartVersion"


class ComponentConfig(Model):
    project: str | None = None
    project_id: int | None = None  # GitLab project id: webhooks match it or `project`
    repo_url: str | None = None
    room: str | None = None
    image: str | None = None
    chart: str | None = None
    namespace: str | None = None
    release: str | None = None
    default_branch: str = "main"
    pins: list[PinConfig] = Field(default_factory=lambda: [PinConfig()])


class DeployConfig(Model):
    diff: list[str] = [
        "helmfile", "-e", "{env}", "--file", "components/{component}/helmfile.yaml",
        "diff", "--detailed-exitcode", "--suppress-secrets", "--context", "5",
    ]  # fmt: skip
    apply: list[str] = [
        "helmfile", "-e", "{env}", "--file", "components/{component}/helmfile.yaml",
        "sync", "--wait",
    ]  # fmt: skip
    rollback: list[str] = ["helm", "rollback", "{release}", "0", "-n", "{namespace}", "--wait"]
    test: list[str] | None = None
    timeout: float = 900
    rollout_timeout: float = 300


class AuthRule(Model):
    who: list[str]
    role: Literal["anyone", "deployer", "admin"]
    components: list[str] = ["*"]
    environments: list[str] = ["*"]
    trust: Literal["account", "hostmask"] = "account"

    @model_validator(mode="after")
    def _hostmask_needs_trust(self) -> AuthRule:
        for who in self.who:
            kind, sep, _ = who.partition(":")
            if not sep or kind not in ("irc", "irc-host", "xmpp", "console", "http"):
                raise ValueError(
                    f"identity '{who}' must start with irc:, irc-host:, xmpp:, console: or http:"
                )
            if kind == "irc-host" and self.trust != "hostmask":
                raise ValueError(
                    f"'{who}' is a hostmask: set trust: hostmask on this rule to allow it"
                )
        return self


class AuthConfig(Model):
    rules: list[AuthRule] = []


class SalSink(Model):
    """One SAL destination: `store`, `{irc_channel: "#x"}` or `{jsonl: path}`."""

    store: bool = False
    irc_channel: str | None = None
    jsonl: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if data == "store":
            return {"store": True}
        if isinstance(data, str):
            raise ValueError("expected 'store', {irc_channel: ...} or {jsonl: ...}")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SalSink:
        if [self.store, self.irc_channel is not None, self.jsonl is not None].count(True) != 1:
            raise ValueError("give exactly one of store, irc_channel, jsonl")
        return self

    @property
    def name(self) -> str:
        if self.irc_channel:
            return f"irc:{self.irc_channel}"
        if self.jsonl:
            return f"jsonl:{self.jsonl}"
        return "store"


class SalConfig(Model):
    sinks: list[SalSink] = [SalSink(store=True)]
    retry_every: float = 30.0


class FloodConfig(Model):
    burst: int = Field(4, ge=1)
    per_second: float = Field(0.5, gt=0)


class MonitorsConfig(Model):
    enabled: bool = True  # false: no periodic checks or alerts (`!status` still works)
    interval: float = 300
    undeployed_after: float = 86400
    remind_every: float = 86400
    drift_grace: float = 900
    source_timeout: float = Field(5.0, gt=0, description="seconds a status source may take")
    status_cache: float = Field(10.0, ge=0, description="seconds `!status` reuses what it read")


class StoreConfig(Model):
    """Where state lives: SQLite (default `sqlite:///<bot.state_dir>/deploybot.sqlite3`) or a
    PostgreSQL shared by replicas (`postgresql://user@host:port/db`, password from a secret)."""

    url: str | None = None
    password_env: str | None = None
    password_file: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///<path> or postgresql://user@host:port/db")
        if v is not None and "@" in v and ":" in v.split("://", 1)[1].split("@", 1)[0]:
            raise ValueError("inline password in the url; use store.password_env or _file")
        return v


class LeaderElectionConfig(Model):
    """Replicas elect one leader; absent means a single instance."""

    backend: Literal["postgres", "kubernetes"]
    lease_seconds: float = Field(15, ge=2, le=300)
    namespace: str | None = None  # kubernetes: default the pod's own namespace
    lease_name: str = "deploybot"
    kubeconfig: str | None = None
    kube_context: str | None = None


class Config(Model):
    bot: BotConfig = BotConfig()
    http: HttpConfig = HttpConfig()
    chat: ChatConfig = ChatConfig()
    gitlab: GitlabConfig | None = None
    control_repo: ControlRepoConfig | None = None
    registry: RegistryConfig | None = None
    environments: list[EnvironmentConfig] = []
    components: dict[str, ComponentConfig] = {}
    deploy: DeployConfig = DeployConfig()
    auth: AuthConfig = AuthConfig()
    sal: SalConfig = SalConfig()
    flood: FloodConfig = FloodConfig()
    monitors: MonitorsConfig = MonitorsConfig()
    store: StoreConfig = StoreConfig()
    leader_election: LeaderElectionConfig | None = None
    demo: bool = False

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [e.name for e in self.environments]
        if len(set(names)) != len(names):
            raise ValueError("environments: names must be unique")
        if self.leader_election is not None and not self.store_url.startswith("postgres"):
            raise ValueError(
                "leader_election: replicas need a shared store; set store.url to postgresql://"
            )
        for env in self.environments:
            if env.requires and env.requires not in names:
                raise ValueError(
                    f"environment {env.name}: requires unknown environment {env.requires!r}"
                )
        for comp in self.components:
            if not NAME_RE.match(comp):
                raise ValueError(f"component name {comp!r}: lowercase letters, digits, . _ -")
        return self

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.bot.state_dir / 'deploybot.sqlite3'}"

    def env(self, name: str) -> EnvironmentConfig | None:
        return next((e for e in self.environments if e.name == name), None)

    @property
    def env_names(self) -> list[str]:
        return [e.name for e in self.environments]


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "function-before", "literal[", "json-or")):
            continue
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _format_errors(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        msg = err["msg"]
        msg = msg.removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        line = f"{_format_loc(err['loc'])}: {msg}"
        if line not in lines:
            lines.append(line)
    return lines


def parse_config(data: Any) -> Config:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    if errors := unserved_rooms(config):
        raise ConfigError(errors)
    return config


def unserved_rooms(config: Config) -> list[str]:
    """`path: ...` for each room the bot would speak in that no chat connection serves.

    A console serves every room; otherwise an IRC channel must be in `chat.irc.channels` and
    an XMPP room in `chat.xmpp.rooms`. A config without any chat connection is not checked.
    """
    chat = config.chat
    if chat.console is not None or (chat.irc is None and chat.xmpp is None):
        return []
    served = {c.lower() for c in (chat.irc.channels if chat.irc else [])}
    served |= {r.lower() for r in (chat.xmpp.rooms if chat.xmpp else [])}
    wanted = [("chat.default_room", chat.default_room)]
    wanted += [(f"components.{n}.room", c.room) for n, c in config.components.items() if c.room]
    wanted += [
        (f"sal.sinks[{i}].irc_channel", s.irc_channel)
        for i, s in enumerate(config.sal.sinks)
        if s.irc_channel
    ]
    return [
        f"{path}: {room!r} is not served by any chat connection"
        " (list it in chat.irc.channels or chat.xmpp.rooms)"
        for path, room in wanted
        if room.lower() not in served
    ]


def load_config(path: str | Path) -> Config:
    """Read and validate a config file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}"]) from None
    return parse_config(data)
