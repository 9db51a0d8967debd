"""The `deploybot` command line: run, demo, check-config, schema, sal, store copy, --version."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from bot import __version__
from bot.config.model import Config, ConfigError, is_loopback, load_config
from bot.config.secrets import sasl_problems, unreadable_secrets
from bot.core.errors import StartupError, StoreError
from bot.core.logs import FORMATS, setup_logging
from bot.core.redact import Redactor
from bot.store.copy import copy_store
from bot.store.db import Store, store_from_config
from bot.store.sal import Sal, parse_since


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    common.add_argument(
        "--log-format", choices=FORMATS, default=argparse.SUPPRESS,
        help="text (default) or json: one JSON object per line (env DEPLOYBOT_LOG_FORMAT)",
    )  # fmt: skip
    env_config = os.environ.get("DEPLOYBOT_CONFIG")
    config_help = "the YAML config file (default: $DEPLOYBOT_CONFIG" + (
        f" = {env_config})" if env_config else ", unset)"
    )

    def with_config(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-c", "--config", default=env_config, required=env_config is None, help=config_help
        )

    p = argparse.ArgumentParser(prog="deploybot", description=__doc__, parents=[common])
    p.add_argument("--version", action="version", version=f"deploybot {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[common], help="run the bot")
    with_config(run)
    demo = sub.add_parser(
        "demo", parents=[common], help="the embedded demo (console chat, local repos)"
    )
    demo.add_argument("--dir", default=".deploybot-demo", help="where the demo keeps its state")
    demo.add_argument("--listen", default=None, help="webhook server host:port")
    check = sub.add_parser("check-config", parents=[common], help="validate a config file")
    with_config(check)
    sub.add_parser("schema", parents=[common], help="print the config's JSON Schema")
    sal = sub.add_parser("sal", parents=[common], help="read the Server Admin Log")
    with_config(sal)
    sal.add_argument("--component", help="only entries about this component")
    sal.add_argument("--env", help="only entries about this environment")
    sal.add_argument(
        "--since", help="ISO time (2026-11-01, 2026-11-01T12:00:00Z) or an age (30m, 1h, 2d, 1w)"
    )
    sal.add_argument("--limit", type=int, default=50, help="at most this many entries (50)")
    sal.add_argument("--json", action="store_true", help="one JSON object per entry")
    store = sub.add_parser("store", help="store maintenance")
    store_sub = store.add_subparsers(dest="store_cmd", required=True)
    copy = store_sub.add_parser("copy", help="copy every row into an empty store")
    copy.add_argument("--from", dest="source", required=True, help="sqlite:///… or postgresql://…")
    copy.add_argument("--to", dest="target", required=True, help="sqlite:///… or postgresql://…")
    return p


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        raise SystemExit(2) from None


async def _sal(config: Config, args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"deploybot sal: {exc}", file=sys.stderr)
        return 2
    store = store_from_config(config)
    if store.path is not None and not store.path.exists():
        print(f"no store at {store.path}", file=sys.stderr)
        return 1
    await store.open()
    try:
        sal = Sal(store, [], Redactor())
        entries = await sal.query(
            component=args.component, env=args.env, since=since, limit=args.limit
        )
    finally:
        await store.close()
    for e in reversed(entries):
        if args.json:
            print(json.dumps(e.to_json(), sort_keys=True))
        else:
            where = " ".join(x for x in (e.component, e.env) if x)
            print(f"{e.ts} #{e.id} [{e.action}{' ' + where if where else ''}] {e.message}")
    return 0


def state_dir_problem(state_dir: Path) -> str | None:
    """One line if the bot cannot write its state directory (read-only, missing rights)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / f".deploybot-write-check-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return f"deploybot: state directory {state_dir} is not writable: {exc.strerror or exc}"
    return None


async def _copy(args: argparse.Namespace) -> int:
    source, target = Store(args.source), Store(args.target)
    copied = await copy_store(source, target)
    rows = sum(copied.values())
    print(
        f"copied {rows} rows in {len(copied)} tables from {source.describe()}"
        f" to {target.describe()} (sal: {copied.get('sal', 0)} entries)"
    )
    return 0


async def _run(config: Config) -> int:
    from bot.app import App

    problem = state_dir_problem(config.bot.state_dir)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    await App(config).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _start(argv)
    except StartupError as exc:
        print(f"deploybot: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `deploybot sal | head`: the reader left; exit quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _start(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    log_format = getattr(args, "log_format", None) or os.environ.get("DEPLOYBOT_LOG_FORMAT")
    if (log_format or "text") not in FORMATS:
        print(f"DEPLOYBOT_LOG_FORMAT must be text or json, not {log_format!r}", file=sys.stderr)
        return 2
    setup_logging(log_format or "text", getattr(args, "verbose", False))
    try:
        return _main(args)
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.cmd == "schema":
        print(json.dumps(Config.model_json_schema(), indent=2, sort_keys=True))
        return 0
    if args.cmd == "store":
        return asyncio.run(_copy(args))
    if args.cmd == "check-config":
        config = _load(args.config)
        if problems := unreadable_secrets(config):
            for line in problems:
                print(line, file=sys.stderr)
            return 2
        print(
            f"{args.config}: ok ({len(config.components)} components,"
            f" {len(config.environments)} environments)"
        )
        return 0
    if args.cmd == "sal":
        return asyncio.run(_sal(_load(args.config), args))
    if args.cmd == "run":
        config = _load(args.config)
        if problems := sasl_problems(config):
            for line in problems:
                print(line, file=sys.stderr)
            return 2
        return asyncio.run(_run(config))
    if args.cmd == "demo":
        from bot.demo.setup import run_demo

        if args.listen is not None and (why := _demo_listen_problem(args.listen)):
            print(f"deploybot demo: --listen {args.listen}: {why}", file=sys.stderr)
            return 2
        return asyncio.run(run_demo(Path(args.dir), args.listen))
    return 2


def _demo_listen_problem(listen: str) -> str | None:
    """Why the demo cannot listen there (its pages have no login and its webhook no secret,
    so it stays on loopback), else None; checked before the demo directory is touched."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        return "expected HOST:PORT, e.g. 127.0.0.1:8081"
    if not is_loopback(host.strip("[]")):
        return (
            "the demo has no page login and no webhook secret, so it listens on loopback"
            " only; use 127.0.0.1:" + port + " (a real config sets http.auth and a secret)"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
