"""The `deploybot` command line: run, demo, check-config, sal, --version."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from bot import __version__
from bot.core.config import Config, ConfigError, load_config
from bot.core.redact import Redactor
from bot.core.sal import Sal
from bot.core.store import Store


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deploybot", description=__doc__)
    p.add_argument("--version", action="version", version=f"deploybot {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the bot")
    run.add_argument("-c", "--config", required=True)
    demo = sub.add_parser("demo", help="the embedded demo (console chat, local repos)")
    demo.add_argument("--dir", default=".deploybot-demo", help="where the demo keeps its state")
    demo.add_argument("--listen", default=None, help="webhook server host:port")
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("-c", "--config", required=True)
    sal = sub.add_parser("sal", help="read the Server Admin Log")
    sal.add_argument("-c", "--config", required=True)
    sal.add_argument("--component")
    sal.add_argument("--env")
    sal.add_argument("--since", help="ISO timestamp, e.g. 2026-11-01 or 2026-11-01T12:00:00Z")
    sal.add_argument("--limit", type=int, default=50)
    sal.add_argument("--json", action="store_true")
    return p


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        raise SystemExit(2) from None


async def _sal(config: Config, args: argparse.Namespace) -> int:
    db = config.bot.state_dir / "deploybot.sqlite3"
    if not db.exists():
        print(f"no store at {db}", file=sys.stderr)
        return 1
    store = Store(db)
    await store.open()
    try:
        sal = Sal(store, [], Redactor())
        entries = await sal.query(
            component=args.component, env=args.env, since=args.since, limit=args.limit
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


async def _run(config: Config) -> int:
    from bot.app import App

    problem = state_dir_problem(config.bot.state_dir)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    await App(config).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.cmd == "check-config":
        config = _load(args.config)
        print(
            f"{args.config}: ok ({len(config.components)} components,"
            f" {len(config.environments)} environments)"
        )
        return 0
    if args.cmd == "sal":
        return asyncio.run(_sal(_load(args.config), args))
    if args.cmd == "run":
        return asyncio.run(_run(_load(args.config)))
    if args.cmd == "demo":
        from bot.demo.setup import run_demo

        return asyncio.run(run_demo(Path(args.dir), args.listen))
    return 2


if __name__ == "__main__":
    sys.exit(main())
