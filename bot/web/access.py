"""Who may read the pages (`http.auth`), and the headers every page carries.

`none` (loopback only; the config refuses it elsewhere), a bearer token or the cookie the
login form sets (`token_env`/`token_file`), or an identity put in a header by an
authenticating proxy (`trusted_header`), allowed when it matches a rule in `auth.rules`.
Webhooks, health, readiness, metrics and the static files stay open: they have their own
checks or show nothing private. Every response gets a Content-Security-Policy that allows
scripts and styles from this server only (no inline script).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot.config.auth import Role, grants, role_for
from bot.config.model import Config, read_secret

log = logging.getLogger("deploybot.web")

OPEN_PATHS = ("/healthz", "/ready", "/metrics", "/webhooks/", "/static/", "/login", "/logout")
LOGS_ROLE = "pod logs need the deployer role on that component and environment, as !logs does\n"
SHARED_PATHS = ("/healthz", "/ready", "/metrics", "/static/")
SESSION_SECONDS = 12 * 3600
LOGIN_FAILURES = 5  # wrong tokens per peer within LOGIN_WINDOW before /login answers 429
LOGIN_WINDOW = 60.0
COOKIE = "deploybot_session"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
IDENTITY = web.AppKey("identity", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_OPEN_EXACT = frozenset(p for p in OPEN_PATHS if not p.endswith("/"))
_OPEN_PREFIXES = tuple(p for p in OPEN_PATHS if p.endswith("/"))


def is_open(path: str) -> bool:
    """Paths anyone may ask for: OPEN_PATHS, those ending in `/` with all below them."""
    return path in _OPEN_EXACT or path.startswith(_OPEN_PREFIXES)


class Access:
    def __init__(self, config: Config) -> None:
        self.config = config
        auth = config.http.auth
        self.mode = "none" if auth == "none" else ("token" if auth.trusted_header is None
                                                   else "header")  # fmt: skip
        self.header = None if auth == "none" else auth.trusted_header
        self.token = None if auth == "none" else read_secret(auth.token_env, auth.token_file)
        if self.mode == "token" and not self.token:
            log.warning(
                "http.auth names a token that is empty or unreadable: every page is refused"
            )
        self._sessions: dict[str, float] = {}  # session id -> expiry (time.time())
        self._failures: dict[str, list[float]] = {}  # peer -> times of wrong tokens

    def from_proxy(self, request: web.Request) -> bool:
        """Did the request come from one of `http.trusted_proxies`?"""
        return self.config.http.is_trusted_proxy(request.remote)

    def secure(self, request: web.Request) -> bool:
        """HTTPS as the browser sees it: TLS here, or a trusted proxy saying so."""
        proto = request.headers.get("X-Forwarded-Proto", "").strip().lower()
        return request.secure or (self.from_proxy(request) and proto == "https")

    def who(self, request: web.Request) -> str | None:
        """The identity a request proves (`http:token`, `http:<header value>`), else None."""
        if self.mode == "none":
            return "http:anonymous"
        if self.mode == "header":
            if not self.from_proxy(request):  # anyone can send a header; only the proxy counts
                return None
            value = request.headers.get(self.header or "", "").strip()
            if not value:
                return None
            ident = f"http:{value}"
            return ident if grants(self.config.auth.rules, (ident,)) else None
        token = self.token
        if not token:
            return None
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and hmac.compare_digest(
            bearer[7:].strip().encode(), token.encode()
        ):
            return "http:token"
        cookie = request.cookies.get(COOKIE, "")
        expires = self._sessions.get(cookie) if cookie else None
        if expires is not None and expires > time.time():
            return "http:token"
        if expires is not None:
            del self._sessions[cookie]
        return None

    def may_read(self, request: web.Request, gate: tuple[str, str] | None) -> bool:
        """A gated page (pod logs) needs the deployer role there, as `!logs` does; with
        `auth: none` (loopback only) the local operator reads everything."""
        if gate is None or self.mode == "none":
            return True
        ident = self.who(request)
        rules = self.config.auth.rules
        return ident is not None and role_for(rules, (ident,), *gate) >= Role.deployer

    def wrong_listener(self, request: web.Request) -> bool:
        """With `http.pages_listen`, the pages answer only there and the webhook only on
        `listen` (health, readiness, metrics and static files answer on both)."""
        http = self.config.http
        if http.pages_listen is None or request.transport is None:
            return False
        sock = request.transport.get_extra_info("sockname")
        on_pages = bool(sock) and int(sock[1]) == int(http.pages_listen.rpartition(":")[2])
        if request.path.startswith("/webhooks/"):
            return on_pages
        return not on_pages and not request.path.startswith(SHARED_PATHS)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.wrong_listener(request):
            resp: web.StreamResponse = web.Response(
                status=404, text="not served on this address (see http.pages_listen)\n"
            )
        elif is_open(request.path):
            resp = await handler(request)
        elif self.who(request) is None:
            resp = self.refuse(request)
        else:
            resp = await handler(request)
        if not resp.prepared:
            resp.headers.setdefault("Content-Security-Policy", CSP)
            resp.headers.setdefault("X-Content-Type-Options", "nosniff")
            resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp

    def refuse(self, request: web.Request) -> web.Response:
        if self.mode == "token" and "text/html" in request.headers.get("Accept", ""):
            target = quote(request.path_qs, safe="/?=&")
            raise web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")
        why = (
            "send Authorization: Bearer <token> or log in at /login"
            if self.mode == "token"
            else f"the {self.header} header is missing, not from http.trusted_proxies, or names"
            " nobody in auth.rules"
        )
        return web.Response(
            status=401 if self.mode == "token" else 403,
            text=f"not authorized: {why}\n",
            headers={"WWW-Authenticate": "Bearer"} if self.mode == "token" else {},
        )

    def throttled(self, request: web.Request) -> float:
        """Seconds this peer must wait before it may try a token again (0: it may)."""
        now = time.time()
        recent = [t for t in self._failures.get(request.remote or "", []) if t > now - LOGIN_WINDOW]
        self._failures[request.remote or ""] = recent
        if len(recent) < LOGIN_FAILURES:
            return 0.0
        return max(1.0, recent[0] + LOGIN_WINDOW - now)

    def login_ok(self, request: web.Request, given: str) -> str | None:
        """A new session id (random, server-side, expiring) for a correct token, else None
        (and the failure counts against the peer)."""
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            self._failures.setdefault(request.remote or "", []).append(time.time())
            while len(self._failures) > 10_000:  # bounded, whatever the number of peers
                del self._failures[next(iter(self._failures))]
            return None
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v > now}
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + SESSION_SECONDS
        return session

    def logout(self, request: web.Request) -> None:
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)


def safe_next(value: str | None) -> str:
    """Only a path on this site may be a redirect target after login: no scheme or host, no
    backslash, no control character (a browser drops a tab: `/\t/evil` is `//evil`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/status"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/status"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path.startswith("//"):
        return "/status"
    return value


ACCESS: web.AppKey[Access] = web.AppKey("access", Access)
