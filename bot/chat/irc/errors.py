"""Why an IRC connection failed, in words that name the cause and the fix.

An exception's text is often empty (`ConnectionResetError()`) or cryptic
(`[SSL: WRONG_VERSION_NUMBER]`); a log that repeats "connection lost: " forever tells an
operator nothing. This turns the exception of one connection attempt into one line. Pure.
"""

from __future__ import annotations

import asyncio
import ssl


def describe(exc: BaseException, host: str, port: int, tls: bool, registered: bool) -> str:
    """One line: what went wrong with host:port, and what to check."""
    where = f"{host}:{port}"
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {where} not trusted ({exc.verify_message or detail}); "
            "check chat.irc.host"
        )
    handshake = tls and not registered
    if isinstance(exc, ssl.SSLError) or (
        handshake
        and isinstance(
            exc,
            ConnectionResetError | ConnectionAbortedError | asyncio.IncompleteReadError | EOFError,
        )
    ):
        return (
            f"TLS handshake with {where} failed ({detail}) — is port {port} plaintext? "
            "(then set chat.irc.tls: false)"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused: nothing listens there (check chat.irc.host/port)"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} in time (server down, or a firewall drops the packets)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection to {where} failed: {exc.strerror}"
    if registered:
        return f"connection to {where} lost: {detail}"
    return f"connection to {where} closed before registration: {detail}"
