"""A loopback TCP proxy a test can hold, freeze and watch.

- One replica's way to the shared database (tests/e2e/test_replicas.py): two replicas share
  one PostgreSQL, so stopping the server would cut both off; a replica that connects through
  its own proxy can be cut off alone. `freeze()` stops forwarding in both directions
  (connections stay open, bytes wait, as on a dead network path); `thaw()` lets them through.
- The bot's way to an IRC server that is restarted under it (tests/support/ircrestarts.py):
  `hold()` makes new connections wait (accepted, not yet forwarded) until `admit()`, so a
  watcher can rejoin first; `on_upstream` sees each chunk going to the server.

Runs on the test's event loop; `close()` stops it (held connections end).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

HOST = "127.0.0.1"


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._open = asyncio.Event()  # bytes flow
        self._open.set()
        self._admit = asyncio.Event()  # new connections are forwarded
        self._admit.set()
        self._closed = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0  # forwarded so far
        self.on_upstream: Callable[[bytes], None] | None = None  # a chunk went to the target

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url_for(self, url: str) -> str:
        """`url` (postgresql://user@127.0.0.1:PORT/db) through this proxy."""
        return url.replace(f":{self.target_port}/", f":{self.port}/")

    def freeze(self) -> None:
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    def hold(self) -> None:
        self._admit.clear()

    def admit(self) -> None:
        self._admit.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        await self._admit.wait()
        if self._closed:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers.append(up_writer)
        for src, dst, up in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(src, dst, up))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
        try:
            while True:
                await self._open.wait()
                data = await src.read(65536)
                if not data:
                    break
                await self._open.wait()  # frozen mid-way: hold what was read
                dst.write(data)
                if up and self.on_upstream is not None:
                    self.on_upstream(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    async def close(self) -> None:
        self._closed = True
        self._admit.set()  # held connections end instead of waiting forever
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self._writers:
            with contextlib.suppress(Exception):
                w.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
