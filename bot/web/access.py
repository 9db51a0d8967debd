"""Who may read the pages (`http.auth`), and the headers every page carries.

`none` (loopback only; the config refuses it elsewhere), a bearer token or the cookie the
login form sets (`token_env`/`token_file`), or an identity put in a header by an
authenticating proxy (`trusted_header`), allowed when it matches a rule in `auth.rules`.
Webhooks, health, readiness, metrics and the static files stay open: they have their own
checks or show nothing private. Every response gets a Content-Security-Policy that allows
scripts and styles from this server only (no inline script).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from bot.config.auth import grants
from bot.config.model import Config, read_secret

log = logging.getLogger("deploybot.web")

OPEN_PATHS = ("/healthz", "/ready", "/metrics", "/webhooks/", "/static/", "/login")
COOKIE = "deploybot_session"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
IDENTITY = web.AppKey("identity", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _session_value(token: str) -> str:
    """What the cookie holds: a MAC of the token, never the token itself."""
    return hmac.new(token.encode(), b"deploybot web session", hashlib.sha256).hexdigest()


def is_open(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in OPEN_PATHS)


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

    def who(self, request: web.Request) -> str | None:
        """The identity a request proves (`http:token`, `http:<header value>`), else None."""
        if self.mode == "none":
            return "http:anonymous"
        if self.mode == "header":
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
        if cookie and hmac.compare_digest(cookie.encode(), _session_value(token).encode()):
            return "http:token"
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_open(request.path):
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
            else f"the {self.header} header is missing or names nobody in auth.rules"
        )
        return web.Response(
            status=401 if self.mode == "token" else 403,
            text=f"not authorized: {why}\n",
            headers={"WWW-Authenticate": "Bearer"} if self.mode == "token" else {},
        )

    def login_ok(self, given: str) -> str | None:
        """The cookie value for a correct token, else None."""
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        return _session_value(self.token)


def safe_next(value: str | None) -> str:
    """Only a local path may be a redirect target after login."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/status"
    return value
