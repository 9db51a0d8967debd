"""IRC registration phase: CAP 302 negotiation, SASL PLAIN login, nick fallback, ISUPPORT.

Split out of the adapter (bot.chat.irc.adapter) so the handshake rules read top to bottom in one
place: the adapter owns the socket, channels and accounts; this module owns what is agreed
while registering (plus CAP NEW/DEL later). It does no I/O: handlers return the lines to
send and the adapter writes them. One Registration per connection.
"""

from __future__ import annotations

import base64
import logging
import random

from bot.chat.irc.proto import Line, format_line

WANTED_CAPS = frozenset(
    "message-tags account-tag extended-join account-notify server-time multi-prefix sasl batch"
    " echo-message".split()
)
SASL_FAILURES = frozenset({"902", "904", "905", "906", "908"})
NICK_IN_USE = frozenset({"433", "432", "437"})


def redact(line: str) -> str:
    """The outgoing line as it may be logged: SASL payloads (the password) are masked."""
    if line.startswith("AUTHENTICATE ") and line != "AUTHENTICATE PLAIN":
        return "AUTHENTICATE ***"
    return line


class Registration:
    """Registration state of one connection: capabilities enabled, server features (005).

    `sasl` is (username, password) or None; a failed login is logged (without the password)
    and registration simply continues unauthenticated.
    """

    def __init__(
        self,
        nick: str,
        wanted_caps: frozenset[str],
        sasl: tuple[str, str] | None,
        log: logging.Logger,
    ) -> None:
        self._wanted_nick = nick
        self._wanted_caps = wanted_caps
        self._sasl = sasl
        self._log = log
        self._offered: set[str] = set()
        self._nick_attempt = 0
        self.caps: set[str] = set()  # enabled (ACKed and not DELeted)
        self.casemapping = "rfc1459"  # the rest: server features from ISUPPORT (005)
        self.whox = False
        self.statusmsg = ""
        self.name_prefixes = "~&@%+!"

    def greeting(self, nick: str, realname: str) -> list[str]:
        """The first lines sent on a new connection."""
        user = format_line("USER", self._wanted_nick[:10], "0", "*", realname)
        return ["CAP LS 302", format_line("NICK", nick), user]

    def next_nick(self) -> str:
        """Another nick to try after the server refused ours (433/432/437) before 001."""
        self._nick_attempt += 1
        if self._nick_attempt <= 3:
            return self._wanted_nick + "_" * self._nick_attempt
        return f"{self._wanted_nick[:12]}{random.randint(100, 999)}"  # noqa: S311

    def handle(self, line: Line, registered: bool) -> list[str] | None:
        """Lines to send in answer to a CAP/SASL line; None if line is not one of those."""
        command = line.command
        if command == "CAP":
            return self._on_cap(line, registered)
        if command == "AUTHENTICATE":
            return self._on_authenticate(line)
        if command == "900":
            self._log.info("logged in to services as %s", line.param(2))
            return []
        if command in ("903", "907"):
            return ["CAP END"]
        if command in SASL_FAILURES:
            self._log.error(
                "SASL login as %s failed (%s); continuing without an account",
                self._sasl[0] if self._sasl else "?",
                command,
            )
            return ["CAP END"]
        return None

    def isupport(self, line: Line) -> None:
        """Record the server features the bot relies on from one 005 (ISUPPORT) line."""
        for token in line.params[1:-1]:
            key, _, value = token.partition("=")
            if key == "CASEMAPPING":
                self.casemapping = value.lower()
            elif key == "WHOX":
                self.whox = True
            elif key == "STATUSMSG":
                self.statusmsg = value
            elif key == "PREFIX" and ")" in value:
                self.name_prefixes = value.split(")", 1)[1]

    def _on_cap(self, line: Line, registered: bool) -> list[str]:
        sub, args = line.param(1).upper(), list(line.params[2:])
        more = len(args) > 1 and args[0] == "*"
        names = args[-1].split() if args else []
        if sub in ("LS", "NEW"):
            self._offered.update(n.split("=", 1)[0] for n in names)
            if more:
                return []
            wanted = (self._offered & self._wanted_caps) - self.caps
            if not self._sasl or registered:
                wanted.discard("sasl")
            if self._sasl and "sasl" not in self._offered and sub == "LS":
                self._log.error("server does not offer SASL; continuing without an account")
            if wanted:
                return [format_line("CAP", "REQ", " ".join(sorted(wanted)))]
            return [] if registered else ["CAP END"]
        if sub == "ACK":
            for name in names:
                if name.startswith("-"):
                    self.caps.discard(name[1:])
                else:
                    self.caps.add(name)
            if registered:
                return []
            return ["AUTHENTICATE PLAIN" if "sasl" in names and self._sasl else "CAP END"]
        if sub == "NAK" and not registered:
            self._log.warning("server refused capabilities %s", " ".join(names))
            return ["CAP END"]
        if sub == "DEL":
            self.caps.difference_update(names)
        return []

    def _on_authenticate(self, line: Line) -> list[str]:
        if line.param(0) != "+" or not self._sasl:
            return []
        user, password = self._sasl
        payload = base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode()
        chunks = [payload[i : i + 400] for i in range(0, len(payload), 400)]
        if len(chunks[-1]) == 400:
            chunks.append("+")
        return [f"AUTHENTICATE {chunk}" for chunk in chunks]
