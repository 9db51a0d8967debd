"""The live feed: announcements fanned out to every open page over Server-Sent Events.

The announcer calls `Feed.publish` after each line is queued for chat, so a page shows
exactly what the rooms are told. Each open page has a bounded queue; a page that falls
behind loses its oldest events and is told to reload its data (`resync`) instead of
slowing anyone else down. A reconnecting page sends `Last-Event-ID` and gets what it
missed from the recent ring, if it is still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import asdict, dataclass

from aiohttp import web

from bot.core.tasks import within
from bot.delivery.announcer import Announced

HEARTBEAT = 15.0
QUEUE_SIZE = 200
RECENT = 50


@dataclass(frozen=True)
class FeedEvent:
    id: int
    kind: str  # announce | resync
    data: dict[str, object]

    def frame(self) -> bytes:
        body = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {body}\n\n".encode()


class Feed:
    def __init__(self) -> None:
        self._seq = 0
        self._queues: set[asyncio.Queue[FeedEvent | None]] = set()
        self.recent: deque[FeedEvent] = deque(maxlen=RECENT)
        self.closed = False

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def publish(self, said: Announced) -> None:
        """Hand one announcement to every open page (never blocks)."""
        self._seq += 1
        data = asdict(said)
        event = FeedEvent(self._seq, "announce", data)
        self.recent.append(event)
        for queue in self._queues:
            if queue.full():  # a slow page: drop its oldest, tell it to reload
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(FeedEvent(self._seq, "resync", {}))
            queue.put_nowait(event)

    def latest_by_component(self) -> dict[str, Announced]:
        out: dict[str, Announced] = {}
        for event in self.recent:
            said = Announced(**event.data)  # type: ignore[arg-type]
            if said.component:
                out[said.component] = said
        return out

    def subscribe(self) -> asyncio.Queue[FeedEvent | None]:
        """A new page's queue (`None` in it means: the server is closing)."""
        queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[FeedEvent | None]) -> None:
        self._queues.discard(queue)

    def close(self) -> None:
        """End every stream (the server is shutting down)."""
        self.closed = True
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    def missed(self, last_id: str | None) -> list[FeedEvent]:
        """What a page reconnecting with `Last-Event-ID` missed (if still in the ring)."""
        if not last_id or not last_id.isdigit():
            return []
        return [e for e in self.recent if e.id > int(last_id)]

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """`GET /events`: announcements as `text/event-stream`."""
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        queue = self.subscribe()
        try:
            await resp.write(b"retry: 2000\n\n")
            for event in self.missed(request.headers.get("Last-Event-ID")):
                await resp.write(event.frame())
            while not self.closed:
                try:
                    item = await within(queue.get(), HEARTBEAT)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                await resp.write(item.frame())
        except ConnectionResetError:  # the page went away
            pass
        finally:
            self.unsubscribe(queue)
        return resp
