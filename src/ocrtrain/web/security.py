"""Access control for the UI: a token (on loopback too, unless `--no-token`), CSRF protection
for every state-changing request, a Host check against DNS rebinding when bound to loopback,
a cap on request bodies enforced before anything parses them, and headers that keep the page
out of other sites' frames.

It is one ASGI middleware (not `BaseHTTPMiddleware`) so that log streams pass through it
untouched.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

log = logging.getLogger(__name__)

TOKEN_COOKIE = "ocrtrain_token"
CSRF_COOKIE = "ocrtrain_csrf"
CSRF_HEADER = "x-ocrtrain-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_BODY_BYTES = 1024 * 1024
# Swagger UI (/docs) boots from an inline script; every other page runs only /static files.
_CSP = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self' 'unsafe-inline'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
_DOCS_CSP = _CSP.replace(
    "default-src 'self'", "default-src 'self'; script-src 'self' 'unsafe-inline'"
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server reachable from this machine only."""
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same_secret(given: str, token: str) -> bool:
    """Constant-time comparison that takes any text (a non-ASCII guess is just wrong)."""
    return secrets.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def local_path(path: str) -> str:
    """`path` as a path on this server: `//evil.example/` and `/\\evil` become `/evil...`,
    so a redirect built from a request path never leaves this origin."""
    return "/" + path.lstrip("/\\")


def _host_name(host_header: str) -> str:
    """`127.0.0.1:8765` -> `127.0.0.1`, `[::1]:8765` -> `::1`."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class SecurityMiddleware:
    """Token check (when `token` is set), Host check (when `loopback`), CSRF check.

    A state-changing request passes the CSRF check if it either carries the `X-Ocrtrain-CSRF`
    header equal to the `ocrtrain_csrf` cookie (double submit; what the page does), or has a
    JSON body and no foreign `Origin` (what scripts do: browsers cannot send cross-origin JSON
    without a CORS preflight, which this server never grants). Cross-site fetch metadata is
    refused either way.
    """

    def __init__(
        self, app: ASGIApp, *, token: str | None, loopback: bool, max_body: int = MAX_BODY_BYTES
    ) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = _cookies(headers.get("cookie", ""))
        method = str(scope["method"]).upper()
        path = str(scope["path"])
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        host = headers.get("host", "")
        send = _with_safety_headers(send, path)

        if self.loopback and not is_loopback(_host_name(host)):
            await _deny(send, path, 421, f"unexpected Host header {host!r}")
            return

        if self.token is not None:
            given = query.get("token")
            if given is not None and same_secret(given, self.token):
                if method == "GET" and not path.startswith("/api/"):
                    await _redirect_with_cookie(send, path, query, self.token)
                    return
            elif not self._authorized(headers, cookies):
                await _deny(send, path, 401, "a token is required (see 'ocrtrain ui' output)")
                return

        if method not in SAFE_METHODS:
            reason = self._csrf_refusal(headers, cookies, host)
            if reason:
                log.warning("refused %s %s: %s", method, path, reason)
                await _deny(send, path, 403, reason)
                return
        try:
            receive = await _read_body(receive, headers, method, self.max_body)
        except BodyTooLarge as exc:
            await _deny(send, path, exc.status, str(exc))
            return
        await self.app(scope, receive, send)

    def _authorized(self, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and same_secret(auth[7:].strip(), self.token):
            return True
        cookie = cookies.get(TOKEN_COOKIE)
        return cookie is not None and same_secret(cookie, self.token)

    @staticmethod
    def _csrf_refusal(headers: dict[str, str], cookies: dict[str, str], host: str) -> str | None:
        if headers.get("sec-fetch-site") == "cross-site":
            return "cross-site request refused (CSRF)"
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return f"request from origin {origin!r} refused (CSRF)"
        header = headers.get(CSRF_HEADER)
        cookie = cookies.get(CSRF_COOKIE)
        if header and cookie and same_secret(header, cookie):
            return None
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype == "application/json":
            return None  # no Origin, or our own (checked above)
        return (
            "state-changing requests need a JSON body or the X-Ocrtrain-CSRF header "
            "matching the ocrtrain_csrf cookie (CSRF)"
        )


class BodyTooLarge(Exception):
    """A request body over the cap (413), or a Content-Length that is not a number (400)."""

    def __init__(self, message: str, status: int = 413) -> None:
        super().__init__(message)
        self.status = status


async def _read_body(receive: Receive, headers: dict[str, str], method: str, limit: int) -> Receive:
    """Read the whole body (at most `limit` bytes, refused as soon as it says or grows over
    that) and hand it to the app in one message: memory stays bounded whatever is sent."""
    length = headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise BodyTooLarge(f"Content-Length {length[:20]!r} is not a number", 400)
        if int(length) > limit:
            raise BodyTooLarge(f"request body of {int(length)} bytes; the limit is {limit}")
    if method in SAFE_METHODS and length is None and "transfer-encoding" not in headers:
        return receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return _replay(message, receive)  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
    return _replay(body, receive)


def _replay(first: Message, receive: Receive) -> Receive:
    """A `receive` that returns `first` once, then whatever the server sends next."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _with_safety_headers(send: Send, path: str) -> Send:
    """Every response: never framed by another site, no MIME sniffing, no Referer (the token
    may be in the address bar), and a CSP allowing only this server's scripts."""
    csp = _DOCS_CSP if path == "/docs" else _CSP
    extra = [
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed cookie header is the client's problem, not a 500
        return {}
    return {k: m.value for k, m in jar.items()}


async def _deny(send: Send, path: str, status: int, message: str) -> None:
    if path.startswith("/api/") or path in ("/metrics", "/openapi.json"):
        body = json.dumps({"detail": message}).encode()
        ctype = b"application/json"
    else:
        body = f"<!doctype html><title>{status}</title><p>{message}</p>\n".encode()
        ctype = b"text/html; charset=utf-8"
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect_with_cookie(send: Send, path: str, query: dict[str, str], token: str) -> None:
    """`/?token=T` sets the token cookie and drops the token from the address bar."""
    rest = {k: v for k, v in query.items() if k != "token"}
    location = quote(local_path(path)) + ("?" + urlencode(rest) if rest else "")
    cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode()),
                (b"set-cookie", cookie.encode()),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
