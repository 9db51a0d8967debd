"""The port every chat adapter implements, and the values that cross it.

Adapters never import commands or services: they hand each incoming line to the
`on_message` callback given to `start()` and send the lines the announcer gives them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """One line somebody said to the bot.

    identities: verified identity strings, strongest first, e.g.
      ("irc:taavi", "irc-host:taavi!~t@wikimedia/taavi") for a logged-in IRC user,
      ("irc-host:bob!~b@203.0.113.9",) for a user without a services account,
      ("xmpp:taavi@example.org",), ("console:root",).
    room: where the reply goes on this adapter: a channel ("#ops"), a MUC room JID,
      or, for a private message, the sender's nick/JID (private=True).
    edit_of: set when the line corrects an earlier one (XEP-0308 `<replace/>`, IRCv3
      `draft/edit`): the id of the corrected message ("" if unknown). Edits are never run.
    replayed: history replayed on join (MUC history, IRC chathistory/playback) or a
      delayed message (XEP-0203 `<delay/>`): said earlier, never run now.
    to_nick: the bot's own nick on that connection when the line came (a fallback such as
      `deploybot_` after the nick was taken): `deploybot_: status` is addressed to the bot.
    cut_off: (from, to), wall-clock seconds, when the bot could not hear the room. On a line
      read from history after a reconnect, it was said in that window (answer "missed ...",
      never run it). With no nick and no text, it is the adapter's notice that the bot is
      back in `room` and has no history to read: the room is told once.
    """

    adapter: str
    room: str
    nick: str
    text: str
    identities: tuple[str, ...]
    private: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    edit_of: str | None = None
    replayed: bool = False
    to_nick: str = ""
    cut_off: tuple[float, float] | None = None


OnMessage = Callable[[Message], Awaitable[None]]


class ChatAdapter(Protocol):
    """A connection to one chat network."""

    name: str  # "irc", "xmpp", "console"
    # True when the network throttles senders, so the outbox spends a flood budget on it
    rate_limited: bool
    # True when every room's lines show in one stream (the console): a reply there repeating
    # an announcement would show the same line twice
    one_stream: bool

    @property
    def connected(self) -> bool:
        """True while lines can be sent (registered and joined)."""
        ...

    def room_states(self) -> dict[str, bool]:
        """Each configured room (channel, MUC) -> joined right now (all False while down)."""
        ...

    def ready_in(self) -> float:
        """Seconds until a line can go on the wire without waiting for the connection's own
        budget (0: now). The outbox plans a line only then, so replies queued meanwhile
        still go first."""
        ...

    def owns(self, room: str) -> bool:
        """True if announcements for `room` should go out through this adapter."""
        ...

    async def start(self, on_message: OnMessage) -> None:
        """Connect (and keep reconnecting in the background); return once started."""
        ...

    async def send(
        self, room: str, text: str, *, keys: Iterable[str] = (), reply: bool = False
    ) -> None:
        """Send `text` to `room`. Splits lines to the protocol limit; strips CR/LF.

        keys: the outbox keys of the states the line says (an adapter that sends lines again
        after a reconnect drops one a later line of the same keys superseded). reply: asked
        for; it may go ahead of lines said earlier and waiting to be sent again.
        Raises ConnectionError if not connected (the announcer keeps the line queued).
        """
        ...

    async def stop(self) -> None:
        """Leave gracefully (QUIT / disconnect) and stop background tasks."""
        ...
