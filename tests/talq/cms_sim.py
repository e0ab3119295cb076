"""A simulated TALQ CMS built on the official CMS OpenAPI file: it serves the CMS API
on loopback and validates every request the gateway sends against that file
(openapi-core), recording the verdict. Before the bootstrap is complete it refuses
anything but the bootstrap's own steps with 403, as the specification says.

`stop()` and `start()` make it unreachable and back, on the same port.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest

from tests.talq.site import CMS_SPEC

BOOTSTRAP = {("POST", "/devices"), ("POST", "/device-classes"), ("PATCH", "/devices/{a}"),
             ("POST", "/services")}  # fmt: skip


@cache
def cms_api() -> OpenAPI:
    """The CMS OpenAPI file, once per test session (its references resolve slowly)."""
    spec = json.loads(CMS_SPEC.read_text())
    # openapi-core sees the request by host name, without the port
    spec["servers"] = [{"url": "http://127.0.0.1/talq"}]
    return OpenAPI.from_dict(spec, base_uri=CMS_SPEC.resolve().as_uri())


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    errors: list[str] = field(default_factory=list)


class SimulatedCms:
    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}/talq"
        self.api = cms_api()
        self.address = str(uuid.uuid4())  # the CMS's own TALQ address
        self.gateway_address = str(uuid.uuid4())  # the one it gives the gateway
        self.seen: list[Seen] = []
        self.services: list[dict[str, Any]] = []
        self.classes: list[dict[str, Any]] = []
        self.devices: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.fail_reports = 0  # the next N log reports get a 500 (a CMS in trouble)

    @property
    def invalid(self) -> list[Seen]:
        return [s for s in self.seen if s.errors]

    @property
    def bootstrapped(self) -> bool:
        return bool(self.services) and any(c["name"] != "cityedge-gateway" for c in self.classes)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/talq/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        path = "/" + request.match_info["tail"]
        seen = Seen(request.method, path, dict(request.query), body)
        try:
            # in a thread: resolving the data model's references the first time takes
            # seconds, and the gateway under test shares this event loop
            wrapped = AIOHTTPOpenAPIWebRequest(request, body=raw)
            await asyncio.to_thread(self.api.validate_request, wrapped)
        except Exception as exc:  # every way the request differs from the file
            seen.errors.append(f"{type(exc).__name__}: {exc}; {getattr(exc, '__cause__', '')}")
        if request.headers.get("Content-Length") is None:
            seen.errors.append("no Content-Length")
        self.seen.append(seen)
        kind = (request.method, "/devices/{a}" if path.count("/") == 2 and
                path.startswith("/devices/") else path)  # fmt: skip
        if not self.bootstrapped and kind not in BOOTSTRAP:
            return self._json(403, [{"key": "genericError", "description": "bootstrap first"}])
        return self._answer(kind, body)

    def _answer(self, kind: tuple[str, str], body: Any) -> web.Response:
        if kind == ("POST", "/devices"):
            gateway = [d for d in body if d.get("class") == "cityedge-gateway"]
            if gateway:  # the bootstrap's first step: give the gateway its address
                device = json.loads(json.dumps(gateway[0]))
                device["address"] = self.gateway_address
                for fn in device.get("functions", []):
                    if fn["type"] == "GatewayFunction":
                        fn["gatewayAddress"] = {
                            "type": "AttributeString",
                            "value": self.gateway_address,
                        }
                        fn["cmsAddress"] = {"type": "AttributeString", "value": self.address}
                return self._json(201, [device])
            self.devices += body
            return self._json(201, body)
        if kind == ("POST", "/device-classes"):
            self.classes += body
            return self._json(201, body)
        if kind == ("POST", "/services"):
            self.services += body
            return self._json(201, body)
        if kind == ("POST", "/log-reports"):
            if self.fail_reports > 0:
                self.fail_reports -= 1
                return self._json(500, [{"key": "genericError", "description": "busy"}])
            self.reports.append(body)
            return web.Response(status=201)
        if kind == ("PATCH", "/devices/{a}"):
            return web.Response(status=200)
        return self._json(400, [{"key": "genericError", "description": "not simulated"}])

    def _json(self, status: int, body: Any) -> web.Response:
        return web.Response(status=status, body=json.dumps(body).encode(),
                            content_type="application/json",
                            headers={"talq-api-version": "2.7.1"})  # fmt: skip
