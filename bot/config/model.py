"""The typed configuration: pydantic models for the YAML file (its keys are the contract).

Loading reports every error with its YAML path (`components.builds-api.pins[0].key: ...`).
Secrets are never inline: only `*_env` (an environment variable name) or `*_file`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from bot.config.base import NAME_RE, SECRET_WORDS, ConfigError, Model, read_secret
from bot.config.chat import (
    ChatConfig,
    ConsoleConfig,
    IrcConfig,
    KeepaliveConfig,
    NetworkFlood,
    SaslConfig,
    XmppConfig,
)
from bot.config.errors import format_errors, nearest
from bot.config.freezes import FreezeConfig
from bot.config.http import HttpAuthConfig, HttpConfig, is_loopback
from bot.core.text import duration_seconds
from bot.core.windows import parse_windows

__all__ = [
    "NAME_RE", "SECRET_WORDS", "ChatConfig", "ConfigError", "ConsoleConfig", "IrcConfig",
    "HttpAuthConfig", "HttpConfig", "KeepaliveConfig", "Model", "NetworkFlood", "SaslConfig", "XmppConfig", "is_loopback", "read_secret",
]  # fmt: skip


class BotConfig(Model):
    nick: str = "deploybot"
    prefix: str = "!"
    state_dir: Path = Path("./var")
    public_url: str = "http://127.0.0.1:8080"
    reply_timeout: float = Field(0.8, gt=0, description="seconds before 'working on it'")
    read_timeout: float = Field(
        30.0, gt=0, description="seconds a read command (!where, !status...) may take in all"
    )


class GitlabConfig(Model):
    url: str
    token_env: str | None = None
    token_file: str | None = None
    webhook_secret_env: str | None = None
    webhook_secret_file: str | None = None
    # a non-loopback http.listen needs a webhook secret unless this says unsigned is meant
    allow_unsigned_webhooks: bool = False
    mr_notes: bool = True
    announce_mr_pipelines: bool = False
    announce_branches: list[str] = []
    lookup_timeout: float = Field(
        30.0, gt=0, description="seconds an artifact/MR look-up after a pipeline may take"
    )
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
    # reviewed applies: `!apply` runs only deploy.diff; `!apply <c> <env> confirm` applies it
    review: bool = False
    review_by: Literal["other", "self"] = "other"
    review_timeout: str = "15m"
    require_mr_approval: bool = False  # applies of an open bump MR need GitLab's approval
    # a successful default-branch pipeline whose artifacts are present bumps and applies here
    deploy_on_pipeline: bool = False

    @field_validator("review_timeout")
    @classmethod
    def _timeout(cls, v: str) -> str:
        duration_seconds(v)  # a ValueError is reported with its YAML path
        return v

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
    key: str = Field(min_length=1)  # required in every pin given (the default pin has one)


RELEASE_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,51}[a-z0-9])?$")


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
    sal_project: str | None = None  # `!log` naming this component defaults to this project
    gitlab_deployments: bool = False  # record each deploy as a GitLab deployment of `project`
    # an upstream chart: versions from this Helm repository's index.yaml, or oci://host/path
    helm_repo: str | None = Field(None, pattern=r"^(https?|oci)://[^\s]+$")
    pins: list[PinConfig] = Field(
        default_factory=lambda: [PinConfig(key="chartVersion")], min_length=1
    )
    # the helmfile releases that are this component: `{selectors}` in a deploy argv becomes
    # `--selector name=<release>` for each; default: [release or the component's name]
    releases: list[str] | None = Field(None, min_length=1)
    # the label that names a workload's Helm release: the rollout watch judges only the
    # workloads of the component's releases (others in its namespace are someone else's)
    instance_label: str = Field("app.kubernetes.io/instance", pattern=r"^[A-Za-z0-9./_-]+$")

    @field_validator("releases")
    @classmethod
    def _releases(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            if not RELEASE_RE.match(name):
                raise ValueError(f"{name!r} is not a Helm release name (lowercase, digits, -)")
        return v


DEPLOY_SH = ["./deploy.sh", "{component}", "{env}", "--wait"]  # toolforge-deploy's entry point


class DeployConfig(Model):
    # `{selectors}`: `--selector name=<release>` for each of the component's releases
    diff: list[str] = [
        "helmfile", "-e", "{env}", "--file", "components/{component}/helmfile.yaml",
        "diff", "--detailed-exitcode", "--suppress-secrets", "--context", "5", "{selectors}",
    ]  # fmt: skip
    # `helmfile apply`: a diff, then an upgrade of the releases that changed (none: no-op)
    apply: list[str] = [
        "helmfile", "-e", "{env}", "--file", "components/{component}/helmfile.yaml",
        "apply", "--wait", "--suppress-secrets", "{selectors}",
    ]  # fmt: skip
    # {revision}: the Helm revision the bot chose from the cluster's history, else 0 (helm's
    # "the one before the current")
    rollback: list[str] = [
        "helm", "rollback", "{release}", "{revision}", "-n", "{namespace}", "--wait",
    ]  # fmt: skip
    test: list[str] | None = None
    # renders the component in an environment with no cluster (the unapplied check runs it at
    # the commit last applied and at main)
    template: list[str] = [
        "helmfile", "-e", "{env}", "--file", "components/{component}/helmfile.yaml",
        "template", "--skip-deps", "{selectors}",
    ]  # fmt: skip
    timeout: float = Field(900, gt=0)
    rollout_timeout: float = Field(300, gt=0)
    # deploy.sh: apply runs the control repo's entry point (honours override-deploy.sh)
    preset: Literal["helmfile", "deploy.sh"] = "helmfile"
    queue: bool = False  # a busy or locked target queues the command instead of refusing it

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") == "deploy.sh" and "apply" not in data:
            return {**data, "apply": DEPLOY_SH}
        return data


IDENTITY_KINDS = ("irc", "irc-host", "xmpp", "console", "http", "gitlab")


def identity_spelling(who: str) -> str:
    """An identity as the bot spells it: `irc-account:alice` (SPEC's name for a services
    account) is `irc:alice`; an unknown kind is a ValueError."""
    kind, sep, rest = who.partition(":")
    if kind == "irc-account":
        kind = "irc"
    if not sep or kind not in IDENTITY_KINDS:
        raise ValueError(
            f"identity '{who}' must start with irc: (or irc-account:), irc-host:, xmpp:,"
            " console:, http: or gitlab:"
        )
    return f"{kind}:{rest}"


class AuthRule(Model):
    who: list[str]
    role: Literal["anyone", "deployer", "admin"]
    components: list[str] = ["*"]
    environments: list[str] = ["*"]
    trust: Literal["account", "hostmask"] = "account"

    @field_validator("who")
    @classmethod
    def _spelling(cls, v: list[str]) -> list[str]:
        return [identity_spelling(w) for w in v]

    @model_validator(mode="after")
    def _hostmask_needs_trust(self) -> AuthRule:
        for who in self.who:
            kind = who.partition(":")[0]
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
    # stashbot's relay form `!log <actor> <project> <message>` (as from logmsgbot); false:
    # `!log <project> <actor>: <message>`
    relay: bool = True
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
    retry_every: float = Field(30.0, gt=0)
    projects: list[str] = []  # SAL projects `!log <project>` accepts besides the configured ones
    rooms: dict[str, str] = {}  # room -> the project `!log` without one uses there


class FloodConfig(Model):
    """Per-room budget for unasked lines (announcements); replies are not counted."""

    burst: int = Field(4, ge=1)
    per_second: float = Field(1.0, gt=0)
    coalesce: float = Field(
        0.3, ge=0, description="seconds a fresh announcement waits for newer states"
    )


class MonitorsConfig(Model):
    enabled: bool = True  # false: no periodic checks or alerts (`!status` still works)
    interval: float = Field(300, gt=0)
    undeployed_after: float = Field(86400, ge=0)
    remind_every: float = Field(86400, gt=0)
    drift_grace: float = Field(900, ge=0)
    source_timeout: float = Field(5.0, gt=0, description="seconds a status source may take")
    status_cache: float = Field(10.0, ge=0, description="seconds `!status` reuses what it read")
    cert_warn_days: int = Field(21, ge=1, description="certificates expiring sooner alert")
    # `helmfile template`/`diff` of main against what was applied: seconds, or 10m / 1h
    unapplied_every: float = Field(600, gt=0)

    @field_validator("unapplied_every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Any:
        return duration_seconds(v) if isinstance(v, str) else v


class ClusterConfig(Model):
    """Limits on what the bot asks of each cluster."""

    # helm/helmfile runs at once per cluster (kubeconfig + context); more wait their turn
    max_parallel_helm: int = Field(2, ge=1, le=32)


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


class PruneConfig(Model):
    enabled: bool = False  # true allows `!prune apply` (admin); the plan is always read-only
    keep: int = Field(10, ge=1, le=1000)  # newest releases always kept per component
    grace: str = "30d"  # a release built this long ago (or less) is kept

    @field_validator("grace")
    @classmethod
    def _grace(cls, v: str) -> str:
        duration_seconds(v)  # a ValueError is reported with its YAML path
        return v

    @property
    def grace_days(self) -> int:
        return int(duration_seconds(self.grace) // 86400)


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
    prune: PruneConfig = PruneConfig()
    cluster: ClusterConfig = ClusterConfig()
    store: StoreConfig = StoreConfig()
    leader_election: LeaderElectionConfig | None = None
    # person -> their identities on every network (globs allowed); two-person rules, lock
    # owners and "own" checks compare people (bot.config.auth.person_of)
    people: dict[str, list[str]] = {}
    freezes: list[FreezeConfig] = []  # planned freezes; `!freeze` adds ad-hoc ones
    freeze_calendar: str | None = Field(None, pattern=r"^(https?://|file://|/|\./|~/)\S*$")
    freeze_calendar_timeout: float = Field(10.0, gt=0, le=120)
    demo: bool = False

    @field_validator("people")
    @classmethod
    def _people(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {name: [identity_spelling(w) for w in who] for name, who in v.items()}

    def reference_errors(self) -> list[str]:
        """What refers to something that does not exist, each at its YAML path."""
        errors = []
        names = [e.name for e in self.environments]
        if self.leader_election is not None and not self.store_url.startswith("postgres"):
            errors.append(
                "leader_election: replicas need a shared store; set store.url to postgresql://"
            )
        for i, env in enumerate(self.environments):
            if names.index(env.name) != i:
                errors.append(f"environments[{i}].name: {env.name!r} is used twice")
            if env.requires and env.requires not in names:
                errors.append(
                    f"environments[{i}].requires: unknown environment {env.requires!r}"
                    + nearest(env.requires, names)
                )
        for i, freeze in enumerate(self.freezes):
            for name in freeze.envs:
                if name not in names and name != "all":
                    errors.append(
                        f"freezes[{i}].envs: unknown environment {name!r}" + nearest(name, names)
                    )
        for comp in self.components:
            if not NAME_RE.match(comp):
                errors.append(f"components.{comp}: lowercase letters, digits, . _ - only")
        errors += self._webhook_errors()
        if any(s.irc_channel for s in self.sal.sinks) and not self.sal_projects:
            errors.append(
                "sal.sinks: stashbot rejects unknown projects; set sal_project on an"
                " environment or list sal.projects"
            )
        return errors

    def _webhook_errors(self) -> list[str]:
        """A webhook reachable from elsewhere must be signed, unless the operator says not."""
        gl = self.gitlab
        if gl is None or is_loopback(self.http.host) or gl.allow_unsigned_webhooks:
            return []  # no gitlab section: the route refuses every delivery off loopback
        if gl and (gl.webhook_secret_env or gl.webhook_secret_file):
            return []
        return [
            f"gitlab.webhook_secret_env: http.listen {self.http.listen} is not loopback, so"
            " anyone who reaches it could post webhooks; set gitlab.webhook_secret_env (or"
            " _file), or gitlab.allow_unsigned_webhooks: true"
        ]

    @property
    def sal_projects(self) -> list[str]:
        """Every SAL project this bot may log to (`!log <project>` accepts these)."""
        found = [e.sal_project for e in self.environments]
        found += [c.sal_project for c in self.components.values()]
        found += [*self.sal.projects, *self.sal.rooms.values()]
        return list(dict.fromkeys(p for p in found if p))

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.bot.state_dir / 'deploybot.sqlite3'}"

    def env(self, name: str) -> EnvironmentConfig | None:
        return next((e for e in self.environments if e.name == name), None)

    @property
    def env_names(self) -> list[str]:
        return [e.name for e in self.environments]


def parse_config(data: Any) -> Config:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, Config)) from None
    if errors := config.reference_errors() + unserved_rooms(config):
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
    if data is None:
        raise ConfigError([f"{path}: the file is empty; start from config/deploybot.example.yaml"])
    return parse_config(data)
