"""The TALQ gateway API's HTTP layer (aiohttp): what every request and answer must be.

- request bodies plain, `gzip` or `deflate` (aiohttp inflates them); any other
  `Content-Encoding` is 415; the answer is encoded as the request was;
- a `talq-api-version` header of major version 2 (the side with the higher
  minor adapts: we answer in ours), a `clientAddress` (UUID) on every request and
  a `talqRequestId` on every request that changes something;
- every answer has an explicit `Content-Length` (never chunked), `Cache-Control:
  no-transform` and a JSON body in UTF-8; a refusal is an array of
  `TALQErrorMessage` with the status the specification gives it;
- an operation this gateway does not implement answers 400 `genericError` (the one
  status every operation of the OpenAPI file declares) saying so.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from cityedge.gateway.talq.errors import TalqError, bad_request

log = structlog.get_logger(__name__)

API_VERSION = "2.7.1"
VERSION = re.compile(r"^2\.\d{1,3}(?:\.\d{1,3})?$")
ENCODINGS = ("", "identity", "gzip", "deflate")
WRITES = ("POST", "PUT", "PATCH", "DELETE")
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Call:
    """One TALQ request, checked: who asks, its ids, its path parts and its body."""

    method: str
    client: str
    request_id: str | None
    origin_id: str | None
    match: dict[str, str]
    query: dict[str, str]
    body: Any


Handler = Callable[[Call], Awaitable[tuple[int, Any]]]


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def spoken(theirs: str | None) -> str:
    """The version to answer in: ours, or the caller's when it is the lower 2.x (the
    side with the higher minor version adapts)."""
    if theirs is None or not VERSION.match(theirs.strip()):
        return API_VERSION
    mine = tuple(int(p) for p in API_VERSION.split("."))
    asked = tuple(int(p) for p in theirs.strip().split("."))
    return theirs.strip() if asked < mine else API_VERSION


def _encode(payload: Any, encoding: str, version: str) -> tuple[bytes, dict[str, str]]:
    raw = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Cache-Control": "no-transform", "talq-api-version": version}
    if payload is not None:
        headers["Content-Type"] = "application/json; charset=utf-8"
    if encoding == "gzip" and raw:
        raw, headers["Content-Encoding"] = gzip.compress(raw), "gzip"
    elif encoding == "deflate" and raw:
        raw, headers["Content-Encoding"] = zlib.compress(raw), "deflate"
    return raw, headers


def answer(
    status: int, payload: Any, encoding: str = "", version: str = API_VERSION
) -> web.Response:
    raw, headers = _encode(payload, encoding, version)
    # a body of bytes: aiohttp sends Content-Length, never chunks
    return web.Response(status=status, body=raw, headers=headers)


def refusal(error: TalqError, encoding: str = "", version: str = API_VERSION) -> web.Response:
    return answer(error.status, error.body(), encoding, version)


def endpoint(handler: Handler, *, uuid_params: tuple[str, ...] = ()) -> Any:
    """An aiohttp handler that checks the TALQ rules, then calls `handler`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        version = spoken(request.headers.get("talq-api-version"))
        try:
            call = await _checked(request, encoding, uuid_params)
            status, payload = await handler(call)
        except TalqError as err:
            return refusal(err, encoding if encoding in ENCODINGS else "", version)
        return answer(status, payload, encoding, version)

    return handle


async def _checked(request: web.Request, encoding: str, uuid_params: tuple[str, ...]) -> Call:
    if encoding not in ENCODINGS:
        raise TalqError(
            415, "headerValueNotValid", f"Content-Encoding {encoding!r}: use gzip, deflate or none"
        )
    version = request.headers.get("talq-api-version")
    if version is None:
        raise bad_request("headerMissing", "the talq-api-version header is missing")
    if not VERSION.match(version.strip()):
        raise bad_request(
            "headerValueNotValid",
            f"talq-api-version {version!r}: this gateway speaks {API_VERSION}",
        )
    query = dict(request.query)
    client = query.get("clientAddress")
    if client is None:
        raise bad_request("parameterMissing", "clientAddress is missing")
    if not is_uuid(client):
        raise bad_request("parameterValueNotValid", f"clientAddress {client!r} is not a UUID")
    request_id = query.get("talqRequestId")
    if request.method in WRITES and not request_id:
        raise bad_request("parameterMissing", "talqRequestId is missing")
    for name in uuid_params:
        if not is_uuid(request.match_info[name]):
            raise bad_request(
                "parameterValueNotValid", f"{name} {request.match_info[name]!r} is not a UUID"
            )
    body: Any = None
    if request.can_read_body:
        raw = _inflate(await request.content.read(MAX_BODY + 1), encoding)
        if raw:
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise bad_request("payloadError", f"body is not JSON in UTF-8: {exc}") from None
    return Call(
        request.method,
        client,
        request_id,
        query.get("talqOriginRequestId"),
        dict(request.match_info),
        query,
        body,
    )


def _inflate(raw: bytes, encoding: str) -> bytes:
    """The body as sent, inflated here (the server's own inflating is off: it would
    refuse unknown encodings before the TALQ answer, and bound nothing)."""
    if len(raw) > MAX_BODY:
        raise TalqError(413, "payloadError", f"body over {MAX_BODY} bytes")
    if encoding not in ("gzip", "deflate") or not raw:
        return raw
    # gzip; deflate as zlib data or, as some clients send it, raw
    attempts = (16 + zlib.MAX_WBITS,) if encoding == "gzip" else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            plain = inflater.decompress(raw, MAX_BODY + 1)
        except zlib.error:
            continue
        if len(plain) > MAX_BODY or inflater.unconsumed_tail:
            raise TalqError(413, "payloadError", f"body inflates to over {MAX_BODY} bytes")
        if inflater.eof:
            return plain
    raise bad_request("payloadError", f"the body is not valid {encoding} data")


@web.middleware
async def unsupported(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Routes and methods the gateway does not serve: a TALQ refusal, not aiohttp's
    text page; an unexpected failure: 500 `genericError`, logged, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            what = f"{request.method} {request.path}"
            log.info("talq.unsupported", operation=what)
            return refusal(bad_request("genericError", f"{what} is not supported by this gateway"))
        raise
    except Exception as exc:
        log.exception("talq.request_failed", method=request.method, path=request.path)
        return refusal(TalqError(500, "genericError", f"internal error: {type(exc).__name__}"))


def body_list(call: Call, what: str) -> list[dict[str, Any]]:
    if not isinstance(call.body, list) or not all(isinstance(x, dict) for x in call.body):
        raise bad_request("payloadError", f"expected an array of {what}")
    return call.body


def body_object(call: Call, what: str) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise bad_request("payloadError", f"expected a {what} object")
    return call.body


def require(doc: dict[str, Any], what: str, *keys: str) -> None:
    missing = [k for k in keys if not isinstance(doc.get(k), str) or not doc.get(k)]
    if missing:
        raise bad_request("payloadError", f"{what}: {', '.join(missing)} missing")
