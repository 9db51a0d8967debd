"""A chat network that records what reached it, and a settable clock: the outbox tests' fakes
(the boundary, not our code)."""

from __future__ import annotations


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingChat:
    """A chat network that records what reached it (the boundary, not our code)."""

    name = "irc"
    rate_limited = True
    one_stream = False

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.connected = True
        self.wire_wait = 0.0  # seconds until the connection's own budget allows a line

    def ready_in(self) -> float:
        return self.wire_wait

    def owns(self, room: str) -> bool:
        return room.startswith("#")

    async def start(self, on_message: object) -> None:
        pass

    async def send(self, room: str, text: str, **_: object) -> None:
        if not self.connected:
            raise ConnectionError("down")
        self.lines.append((room, text))

    async def stop(self) -> None:
        pass
