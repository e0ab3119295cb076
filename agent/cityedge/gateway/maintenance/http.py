"""A tiny read-only HTTP/1.1 responder on asyncio streams (GET and HEAD, nothing else).

Enough for a phone on the cabinet's service port and a Prometheus scraper, and
small enough to reason about: the request head is bounded in size and time,
bodies are refused, every response closes the connection, and the number of
connections at once is capped. No framework (aiohttp is not on the gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import structlog

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 8 * 1024
HEAD_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
MAX_CONNECTIONS = 32

SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    # no scripts, no external anything: inline styles only
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())


Route = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(detail)


def text(status: HTTPStatus, message: str) -> Response:
    return Response(int(status), (message + "\n").encode())


def parse_head(head: bytes) -> Request:
    """Request line and headers of one request; BadRequest says which status to answer."""
    try:
        lines = head.decode("iso-8859-1").split("\r\n")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest(HTTPStatus.BAD_REQUEST, "undecodable request") from None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, _version = parts
    if not target.startswith("/"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "request target must be a path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed header line")
        headers[name.lower()] = value.strip()
    if method not in ("GET", "HEAD"):
        raise BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, f"{method[:16]} is not allowed here")
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        raise BadRequest(HTTPStatus.BAD_REQUEST, "a read-only page takes no request body")
    path, _, query = target.partition("?")
    return Request(method, path, query, headers)


class Responder:
    """Serves `routes` (path -> handler) on host:port until cancelled."""

    def __init__(
        self,
        routes: dict[str, Route],
        *,
        head_timeout: float = HEAD_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.routes = routes
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self.served: dict[int, int] = {}  # by status code
        self._open = 0

    async def serve(self, host: str, port: int, started: Callable[[int], None]) -> None:
        server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEAD_BYTES)
        bound = int(server.sockets[0].getsockname()[1])
        started(bound)
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._open >= self.max_connections:
                await self._send(writer, text(HTTPStatus.SERVICE_UNAVAILABLE, "busy"), "GET")
                return
            self._open += 1
            try:
                method, response = await self._respond(reader)
                await self._send(writer, response, method)
            finally:
                self._open -= 1
        except (ConnectionError, TimeoutError):
            pass  # the browser left, or stopped reading
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[str, Response]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
        except TimeoutError:
            return "GET", text(HTTPStatus.REQUEST_TIMEOUT, "request head not received in time")
        except asyncio.LimitOverrunError:
            return "GET", text(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request head larger than {MAX_HEAD_BYTES} bytes",
            )
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("closed before a full request head") from None
        try:
            request = parse_head(head[:-4])
        except BadRequest as exc:
            response = text(exc.status, exc.detail)
            if exc.status == HTTPStatus.METHOD_NOT_ALLOWED:
                response = Response(
                    response.status, response.body, headers=(("Allow", "GET, HEAD"),)
                )
            return "GET", response
        route = self.routes.get(request.path)
        if route is None:
            return request.method, text(HTTPStatus.NOT_FOUND, f"no page at {request.path[:64]}")
        try:
            return request.method, await route(request)
        except Exception as exc:  # one broken view must not take the page down
            log.exception("maintenance.view_failed", path=request.path)
            return request.method, text(
                HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}"
            )

    async def _send(self, writer: asyncio.StreamWriter, response: Response, method: str) -> None:
        self.served[response.status] = self.served.get(response.status, 0) + 1
        reason = HTTPStatus(response.status).phrase
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Connection", "close"),
            *SECURITY_HEADERS,
            *response.headers,
        ]
        head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers
        )
        writer.write(head.encode("latin-1") + b"\r\n")
        if method != "HEAD":
            writer.write(response.body)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
