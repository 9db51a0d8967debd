"""The composition root: builds every part from the validated Config and owns start/stop.

Nothing else constructs services or adapters. Background work (outbox delivery, SAL
retries, later webhooks and monitors) runs under `Supervisor`, which logs a crash and
restarts the task with backoff instead of losing it silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

import commands.ack
import commands.apply
import commands.deploy
import commands.freeze
import commands.help
import commands.locks
import commands.logs
import commands.prune
import commands.queue
import commands.sal
import commands.status
import commands.where
from bot.chat.base import ChatAdapter, Message
from bot.chat.console import ConsoleAdapter
from bot.chat.irc.adapter import IrcAdapter
from bot.cluster.charts import ChartRepos
from bot.cluster.kube import ClusterError, KubeCluster
from bot.cluster.registry import Registry
from bot.config.model import Config, read_secret
from bot.control.bumper import build_bumper
from bot.control.diffs import DiffStore
from bot.control.recovery import Recovery
from bot.control.repo import control_repo_from_config
from bot.core.connguard import Guard
from bot.core.errors import StartupError
from bot.core.health import StoreHealth
from bot.core.logbudget import LogBudget
from bot.core.metrics import Metrics
from bot.core.redact import RedactingFilter, Redactor
from bot.core.supervisor import Supervisor
from bot.core.tasks import TaskSet, within
from bot.delivery.announcer import Announcer
from bot.delivery.outbox import Outbox
from bot.deploy import aftercrash
from bot.deploy.deployer import Deployer
from bot.deploy.freezes import FreezeBook
from bot.deploy.onmerge import ControlRepoMRs
from bot.deploy.onpipeline import PipelineDeploys
from bot.deploy.queue import DeployQueue
from bot.gitlab.inbox import EventWorker, Router
from bot.gitlab.webhooks import SecretPolicy, WebhookIngest
from bot.http import build_http_app
from bot.model.state import Model
from bot.monitors.checks import Monitors
from bot.monitors.restarts import RestartWatch
from bot.monitors.unapplied import UnappliedMonitor
from bot.pipelines.announce import PipelineAnnouncer, mr_build_version
from bot.services import Services
from bot.status.board import StatusBoard
from bot.store.db import Store, store_from_config
from bot.store.leader import Elector, Leadership, LeaseBackend, PostgresLease
from bot.store.locks import Locks
from bot.store.probe import StoreProbe
from bot.store.sal import Sal
from commands.dispatch import Dispatcher
from commands.spec import Capabilities, CommandSet

if TYPE_CHECKING:  # loaded only where configured (python-gitlab: ~6 MB)
    from bot.gitlab.api import GitLabAPI

log = logging.getLogger("deploybot")

LOST_LEADERSHIP = 75  # exit status of a leader whose lease ran out
CHECKPOINT_EVERY = 30.0  # seconds between SQLite WAL truncations (the WAL stays small)

COMMAND_MODULES = [
    commands.help, commands.sal, commands.status, commands.deploy, commands.where,
    commands.apply, commands.locks, commands.prune, commands.logs, commands.freeze,
    commands.queue, commands.ack,
]  # fmt: skip


def collect_secrets(config: Config) -> list[str | None]:
    """Every secret value the config names, so they can be redacted everywhere."""
    out = []
    if config.gitlab:
        out += [
            read_secret(config.gitlab.token_env, config.gitlab.token_file),
            read_secret(config.gitlab.webhook_secret_env, config.gitlab.webhook_secret_file),
        ]
    irc = config.chat.irc
    if irc and irc.sasl:
        out.append(read_secret(irc.sasl.password_env, irc.sasl.password_file))
    if config.chat.xmpp:
        out.append(read_secret(config.chat.xmpp.password_env, config.chat.xmpp.password_file))
    if config.registry:
        out.append(read_secret(config.registry.password_env, config.registry.password_file))
    out.append(read_secret(config.store.password_env, config.store.password_file))
    auth = config.http.auth
    if auth != "none":  # the pages' token: a `!log` quoting it must not publish it
        out.append(read_secret(auth.token_env, auth.token_file))
    return out


def build_adapters(config: Config, console: ConsoleAdapter | None) -> list[ChatAdapter]:
    adapters: list[ChatAdapter] = []
    irc = config.chat.irc
    if irc is not None:
        adapters.append(
            IrcAdapter(
                irc.host,
                irc.port,
                irc.nick or config.bot.nick,
                irc.channels,
                tls=irc.tls,
                sasl_username=irc.sasl.username if irc.sasl else None,
                sasl_password=(
                    read_secret(irc.sasl.password_env, irc.sasl.password_file) if irc.sasl else None
                ),
                realname=irc.realname,
                ping_interval=irc.ping_interval,
                ping_timeout=irc.ping_timeout,
                join_retry=irc.join_retry,
                join_retry_max=irc.join_retry_max,
                flood=(irc.flood.burst, irc.flood.per_second) if irc.flood else None,
            )
        )
    xmpp = config.chat.xmpp
    if xmpp is not None:
        from bot.chat.xmpp import XmppAdapter  # slixmpp: loaded only where XMPP is configured

        adapters.append(
            XmppAdapter(
                xmpp.jid,
                read_secret(xmpp.password_env, xmpp.password_file) or "",
                xmpp.rooms,
                host=xmpp.host,
                port=xmpp.port,
                nick=xmpp.nick or config.bot.nick,
                tls=xmpp.tls,
                ping_interval=xmpp.ping_interval,
                ping_timeout=xmpp.ping_timeout,
                join_retry=xmpp.join_retry,
                join_retry_max=xmpp.join_retry_max,
            )
        )
    if config.chat.console is not None:
        adapters.append(console or ConsoleAdapter())
    return adapters


def build_clusters(config: Config) -> dict[str, KubeCluster]:
    """A Kubernetes client per environment that names a kubeconfig or context."""
    clusters = {}
    for env in config.environments:
        if env.kubeconfig is None and env.kube_context is None:
            continue
        path = str(Path(env.kubeconfig).expanduser()) if env.kubeconfig else None
        try:
            clusters[env.name] = KubeCluster.from_kubeconfig(path, env.kube_context)
        except ClusterError as exc:
            log.warning("environment %s: no cluster access (%s); live state unknown", env.name, exc)
    return clusters


def use_io_threads(max_workers: int = 32) -> None:
    """Size the running loop's default executor for blocking API clients (python-gitlab
    runs in `asyncio.to_thread`): the default, cores + 4, would let `!status`
    wait on a handful of calls at a time."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="io")
    )


def settle_heap() -> None:
    """Take what start-up built (modules, config, API clients) out of the cyclic garbage
    collector's walks (`gc.freeze`): the collections during a cold `!status` over 100
    components spent a third of its time walking it. `App.stop` gives it back. Only the young
    generations are collected first: a full collection cost 50-80 ms per start and found about
    20 objects more (what stays frozen with the rest)."""
    gc.collect(1)
    gc.freeze()


def lease_backend(config: Config, store: Store) -> LeaseBackend:
    election = config.leader_election
    assert election is not None
    if election.backend == "kubernetes":
        from bot.cluster.lease import KubeLease  # kubernetes.aio: loaded only where it is used

        return KubeLease(election)
    return PostgresLease(store)


def build_registry(config: Config) -> Registry | None:
    reg = config.registry
    if reg is None:
        return None
    password = read_secret(reg.password_env, reg.password_file)
    return Registry(reg.url, reg.kind, reg.username, password)


class App:
    """One running bot."""

    def __init__(self, config: Config, *, console: ConsoleAdapter | None = None):
        self.config = config
        self.redactor = Redactor(collect_secrets(config))
        self.metrics = Metrics()
        self.store = store_from_config(config)
        election = config.leader_election
        self.leadership = Leadership(election.lease_seconds if election else None)
        self.elector: Elector | None = None
        self._leaving: asyncio.Task[None] | None = None
        self.adapters = build_adapters(config, console)
        self.supervisor = Supervisor()
        self._stop = asyncio.Event()
        self._exits: contextlib.AsyncExitStack | None = None  # what start() did, to undo
        self._runner: web.AppRunner | None = None
        self._http_server: asyncio.Server | None = None
        self._pages_server: asyncio.Server | None = None
        self.http_guard = Guard(config.http.max_connections, config.http.header_timeout)
        self._log_filters: list[logging.Filter] = [LogBudget(), RedactingFilter(self.redactor)]
        self.services = self._services()
        self._capabilities()
        self._intake()

    def _services(self) -> Services:
        """The low-level kit: store, outbox (speaking only while this replica leads), SAL,
        announcer and the clients of outside systems."""
        config = self.config
        outbox = Outbox(
            self.store, self.adapters, config.flood, on_sent=self.metrics.sent,
            default_room=config.chat.default_room, leadership=self.leadership,
            health=StoreHealth(), prefix=str(config.bot.prefix),
        )  # fmt: skip
        self.probe = StoreProbe(self.store, outbox.health)

        async def irc_send(channel: str, text: str) -> None:
            await outbox.enqueue(channel, self.redactor(text), adapter="irc")

        default_project = (config.sal_projects or ["deploybot"])[0]
        sal = Sal(
            self.store, config.sal.sinks, self.redactor,
            irc_send if config.chat.irc else None, default_project,
        )  # fmt: skip
        return Services(
            config=config,
            store=self.store,
            sal=sal,
            outbox=outbox,
            announcer=Announcer(config, outbox, self.redactor),
            locks=Locks(self.store),
            metrics=self.metrics,
            redactor=self.redactor,
            diffs=DiffStore(config.bot.state_dir, config.bot.public_url, self.redactor.outside),
            control=control_repo_from_config(config),
            gitlab=self._gitlab(config),
            clusters=build_clusters(config),
            registry=build_registry(config),
            leadership=self.leadership,
        )

    def _capabilities(self) -> None:
        """The capabilities, each given what it needs; they tell each other things through
        hooks. Then the commands over them."""
        config, services, store = self.config, self.services, self.store
        charts = ChartRepos(config, services.registry)
        self.bumper = build_bumper(
            config, store, services.sal, services.control, services.gitlab, charts,
            mr_builds=lambda c, iid: mr_build_version(store, c, iid),
        )  # fmt: skip
        unapplied = self.unapplied = UnappliedMonitor(services)
        # one model (its history cache is shared); what applying main would change comes
        # from the unapplied monitor's latest round, the freezes in force from the book
        self.freezes = book = FreezeBook(services)
        self.model = Model(services, self.bumper, unapplied=unapplied.source, frozen=book.in_force)
        self.board = StatusBoard(services, self.bumper, model=self.model)
        self.monitors = Monitors(
            services, self.bumper, self.board, unapplied=self.unapplied,
            restarts=RestartWatch(services),
        )  # fmt: skip
        self.unapplied.on_round.append(self.monitors.wake)
        self.deployer = Deployer(
            services, self.bumper, on_finished=self._deploy_finished, model=self.model,
            freezes=self.freezes,
        )  # fmt: skip
        self.queue = DeployQueue(services, self.deployer)
        caps = Capabilities(self.deployer, self.bumper, self.board, self.monitors, self.queue)
        self.dispatcher = Dispatcher(services, caps, CommandSet.collect(COMMAND_MODULES))
        self.queue.runner = self.dispatcher.run_queued
        self.pipelines = PipelineAnnouncer(config, store, services.gitlab, services.announcer)
        self.pipeline_deploys = PipelineDeploys(services, self.bumper, self.deployer)
        self.pipelines.on_artifacts = self.pipeline_deploys.on_artifacts

    def _intake(self) -> None:
        """Webhooks: the route stores them, the event worker routes them to capabilities."""
        config = self.config
        router = Router()
        self.pipelines.register(router)
        ControlRepoMRs(self.services, self.bumper, self.deployer).register(router)
        self.monitors.register(router)
        self.unapplied.register(router)
        self.events = EventWorker(self.store, router, self.metrics)
        if config.leader_election is not None:  # a standby's webhooks are the leader's
            self.events.poll_every = 0.5
        self.webhook_policy = SecretPolicy(config)
        self.webhooks = WebhookIngest(
            self.store, self.metrics, self.webhook_policy, config.http.max_body_bytes,
            on_stored=self.events.wake, body_timeout=config.http.body_timeout,
            handoff=self.events.handoff, last_bytes=lambda: self.http_guard.last_data,
        )  # fmt: skip
        self.events.intake_quiet = self.webhooks.quiet  # acks first, then the handling

    def http_app(self) -> web.Application:
        """The HTTP routes over this bot's parts, webhooks included."""
        return build_http_app(
            self.services, self.board, self.deployer, self.events, self.webhooks, self
        )

    def chat_state(self) -> dict[str, bool]:
        return {a.name: a.connected for a in self.adapters}

    def room_states(self) -> dict[str, dict[str, bool]]:
        return {a.name: a.room_states() for a in self.adapters}

    def _deploy_finished(self, component: str) -> None:
        """What runs changed: no stale `!status`, and the monitors look again now."""
        self.board.forget(component)
        self.monitors.wake()
        self.queue.wake()  # the next in line may go
        self.unapplied.wake()

    @staticmethod
    def _gitlab(config: Config) -> GitLabAPI | None:
        if config.gitlab is None:
            return None
        from bot.gitlab.api import (
            GitLabAPI,  # python-gitlab: loaded only where GitLab is configured
        )

        token = read_secret(config.gitlab.token_env, config.gitlab.token_file)
        return GitLabAPI(config.gitlab.url, token or "")

    @property
    def console(self) -> ConsoleAdapter | None:
        return next((a for a in self.adapters if isinstance(a, ConsoleAdapter)), None)

    async def store_up(self) -> bool:
        return await self.probe.problem() is None

    async def ready(self) -> tuple[bool, str]:
        """200 only when the store answers and writes (asked on every replica, standbys
        too), chat is connected and webhook events are handled in time; else the first
        reason it is not."""
        if not self.store.is_open:
            return False, "store not open"
        health = self.services.outbox.health
        if not health.writable:
            return False, f"store cannot write: {health.error}"
        if (problem := await self.probe.problem()) is not None:
            return False, problem
        if not self.leadership.may_act():
            return True, "standby: accepting webhooks; the leader speaks"
        down = [a.name for a in self.adapters if not a.connected]
        if down:
            return False, "chat not connected: " + ", ".join(down)
        missing = [
            f"{a.name} {r}" for a in self.adapters for r, ok in a.room_states().items() if not ok
        ]
        if missing:
            return False, "not joined: " + ", ".join(missing)
        try:
            age = await self.events.oldest_pending_age()
        except Exception as exc:  # the store failed between the probe and this read
            return False, f"store {self.store.describe()} cannot be read: {type(exc).__name__}"
        limit = self.config.http.ready_max_event_age
        if age > limit:
            return False, f"oldest webhook event waits {age:.0f}s (over {limit:g}s)"
        return True, "ready"

    async def on_message(self, msg: Message) -> None:
        if msg.adapter != "console":  # chat networks: concurrent (commands.lanes orders)
            await self.dispatcher.submit(msg)
            return
        try:  # a console session (often a script) runs its lines one after the other
            await self.dispatcher.handle(msg)
        except Exception:  # nothing a user types may take the bot down
            log.exception("handling a chat line failed")

    async def start(self) -> None:
        """Start, pushing the undoing of each step: `stop()` unwinds them in reverse."""
        self._exits = exits = contextlib.AsyncExitStack()
        for handler in logging.getLogger().handlers:
            for log_filter in self._log_filters:  # the budget first: it groups by template
                handler.addFilter(log_filter)
        exits.callback(self._remove_log_filters)
        use_io_threads()
        await self.store.open()
        exits.push_async_callback(self.store.close)
        exits.push_async_callback(self._resign)  # the next leader need not wait for the lease
        exits.push_async_callback(self._close_clients)
        exits.push_async_callback(self._stop_adapters)
        exits.push_async_callback(self.supervisor.stop)
        exits.push_async_callback(self._flush_outbox)
        exits.push_async_callback(self.monitors.stop)  # a running check finishes (bounded)
        exits.push_async_callback(self.pipelines.stop)
        exits.push_async_callback(self._stop_deployer)
        exits.push_async_callback(self.dispatcher.stop, 5.0)
        await self._listen()
        exits.push_async_callback(self._stop_http)
        self.metrics.leader.set_function(lambda: 1 if self.leadership.may_act() else 0)
        if not self.store.postgres:
            self.supervisor.start("wal-checkpoint", self._checkpoint_loop)
        if self.config.leader_election is None:
            await self._lead()
        else:
            self.elector = Elector(
                lease_backend(self.config, self.store), self.leadership,
                on_elected=lambda: self.supervisor.start("lead", self._lead),
                on_lost=self._lost,
            )  # fmt: skip
            self.supervisor.start("leader-election", self.elector.run)
        warming = TaskSet()  # the cluster clients, made now rather than by the first caller
        exits.push_async_callback(warming.stop)
        for cluster in self.services.clusters.values():
            warming.spawn(cluster.warm())
        settle_heap()
        exits.callback(gc.unfreeze)
        log.info("deploybot started; http on %s", self.config.http.listen)

    async def _listen(self) -> None:
        """Serve HTTP behind the connection guard; a taken port is one clear line."""
        http_app = self.http_app()
        if (warning := self.webhook_policy.warning()) is not None:
            log.warning("%s", warning)
        self._runner = web.AppRunner(http_app, access_log=None, keepalive_timeout=15)
        await self._runner.setup()
        http = self.config.http
        assert self._runner.server is not None  # set by setup()
        try:
            self._http_server = await asyncio.get_running_loop().create_server(
                self.http_guard.factory(self._runner.server), http.host, http.port,
                reuse_address=True,
            )  # fmt: skip
            if http.pages_listen:  # the pages behind the proxy; same app, own address
                host, _, port = http.pages_listen.rpartition(":")
                self._pages_server = await asyncio.get_running_loop().create_server(
                    self.http_guard.factory(self._runner.server), host.strip("[]"), int(port),
                    reuse_address=True,
                )  # fmt: skip
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {http.listen}: {os.strerror(exc.errno) if exc.errno else exc}"
                f" (port {http.port} is"
                " taken? choose another with http.listen, or --listen for the demo)"
            ) from None

    async def _lead(self) -> None:
        """What only the leader (or a single instance) runs."""
        self.supervisor.start("outbox", self.services.outbox.run)
        self.supervisor.start("sal-retry", self._sal_retry_loop)
        self.supervisor.start("events", self.events.run)
        self.supervisor.start("monitors", self.monitors.run)
        self.supervisor.start("unapplied", self.unapplied.run)
        await self.deployer.recover()
        bumper = self.bumper
        if bumper is not None:  # bumps a crash cut off: SAL entries, next commands
            await aftercrash.report_unapplied(self.services, bumper, self.config.components)
            recovery = Recovery(bumper, self._recovered, self.config.sal.retry_every)
            self.supervisor.start("intents", recovery.run)
        for adapter in self.adapters:
            await adapter.start(self.on_message)
        self.supervisor.start("freezes", self.freezes.run)
        self.supervisor.start("queue-runner", self.queue.run)  # not "deploy-*": tests count those
        self.supervisor.start("gitlab-deployments", self.deployer.tracker.run)

    async def _recovered(self, component: str, line: str) -> None:
        """A bump intent settled after a restart: say so, then whether its apply was cut off."""
        await self.services.announcer.announce(line, component=component)
        if self.bumper is not None:
            await aftercrash.report_unapplied(self.services, self.bumper, [component])

    def _lost(self) -> None:
        """The lease ran out: already fenced (nothing more is said, no deploy moves on); kill
        running deploy commands (bounded), then leave, as Kubernetes controllers do, and
        come back as a standby."""
        log.error("leadership lost; exiting so that a fresh process rejoins as a standby")

        async def leave() -> None:
            with contextlib.suppress(Exception):
                await within(self.deployer.stop(), timeout=2.0)
            logging.shutdown()
            os._exit(LOST_LEADERSHIP)

        self._leaving = asyncio.get_running_loop().create_task(leave())

    async def _checkpoint_loop(self) -> None:
        """Truncate SQLite's WAL every CHECKPOINT_EVERY s (left alone it grows to ~4 MB
        before SQLite checkpoints, which a nearly full disk cannot spare)."""
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            try:
                await self.store.checkpoint()
            except Exception as exc:  # a full disk: the writes say so; try again later
                log.warning("store checkpoint failed: %s", exc)

    async def _sal_retry_loop(self) -> None:
        while True:
            await self.services.sal.retry_pending()
            await asyncio.sleep(self.config.sal.retry_every)

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        """Until SIGTERM/SIGINT, or EOF on the console."""
        waiters = [asyncio.ensure_future(self._stop.wait())]
        console = self.console
        if console is not None:
            waiters.append(asyncio.ensure_future(console.finished.wait()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()

    async def stop(self) -> None:
        """Undo what start() did, in reverse: stop accepting (HTTP), let commands finish,
        stop deploys and capabilities, flush the outbox, stop the background tasks, close
        chat and the clients, resign the lease, close the store."""
        exits, self._exits = self._exits, None
        if exits is not None:
            await exits.aclose()

    async def _stop_http(self) -> None:
        if self._http_server is not None:
            self._http_server.close()
            self._http_server = None
        if self._pages_server is not None:
            self._pages_server.close()
            self._pages_server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stop_deployer(self) -> None:
        await self.queue.stop()
        await self.pipeline_deploys.stop()
        if self.store.is_open:
            await self.deployer.stop()  # kills running deploys, marks them interrupted
        await self.unapplied.stop()

    async def _flush_outbox(self) -> None:
        speaking = self.leadership.may_act()  # a standby (or a fenced leader) sends nothing
        if self.store.is_open and speaking and not await self.services.outbox.flush(timeout=10.0):
            log.warning("outbox not empty at shutdown; the rest is sent after restart")

    async def _stop_adapters(self) -> None:
        for adapter in self.adapters:
            with contextlib.suppress(Exception):
                await adapter.stop()

    async def _close_clients(self) -> None:
        if self.services.gitlab is not None:
            self.services.gitlab.close()
        if self.services.registry is not None:
            await self.services.registry.close()
        for cluster in self.services.clusters.values():
            await cluster.close()

    async def _resign(self) -> None:
        if self.elector is not None:
            await self.elector.resign()

    def _remove_log_filters(self) -> None:
        for handler in logging.getLogger().handlers:
            for log_filter in self._log_filters:
                handler.removeFilter(log_filter)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            await self.wait()
        finally:
            await self.stop()
