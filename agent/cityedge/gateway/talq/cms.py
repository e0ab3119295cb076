"""The CMS client: bootstrap, device announcement, log reports and events.

Bootstrap (the specification's order): POST the gateway's own device to the
CMS's `/devices` with nil addresses; the CMS answers with the gateway's address
and its own; POST the gateway's device class and PATCH its attributes; POST the
services; POST the device classes. It is retried (jittered backoff up to
`retry_s`) until the CMS has taken every step, and remembered in the store.

Everything after the bootstrap — device announcements, log reports, events —
goes through the durable queue (`queue`): a CMS outage loses nothing, and the
requests arrive in the order they were made when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from cityedge.gateway.talq import mapping
from cityedge.gateway.talq.core import TalqCore
from cityedge.gateway.talq.devices import services
from cityedge.gateway.talq.http import API_VERSION
from cityedge.gateway.talq.queue import RequestQueue
from cityedge.gateway.talq.reports import Reporter
from cityedge.sdk.backoff import Backoff
from cityedge.sdk.model import Event, Reading

log = structlog.get_logger(__name__)

NIL = "00000000-0000-0000-0000-000000000000"
FLUSH_S = 1.0  # how long readings gather into one log report


class CmsUnavailable(Exception):
    """No answer, or one that says "later" (5xx, 403 before bootstrap): try again."""


class CmsClient:
    def __init__(self, core: TalqCore, queue_path: Path) -> None:
        self.core = core
        self.section = core.section
        self.queue = RequestQueue(queue_path, core.section.queue_max_bytes)
        self.reporter = Reporter(core)
        self.sent = 0  # requests the CMS took
        self.refused = 0  # requests it refused for good (logged, not resent)
        self._wake = asyncio.Event()
        self._observe_failed = False

    # --- from the pipeline ----------------------------------------------------------

    def observe(self, items: Sequence[Reading | Event]) -> None:
        """Readings and events the loggers want: gathered, queued at the next flush. A
        logger configuration this cannot read is said once, never the pipeline's end."""
        try:
            taken = self.reporter.take(items)
        except Exception:
            if not self._observe_failed:
                log.exception("talq.report_failed")
            self._observe_failed = True
            return
        if taken:
            self._wake.set()

    # --- running --------------------------------------------------------------------

    async def run(self) -> None:
        context = self._tls()
        timeout = aiohttp.ClientTimeout(total=self.section.request_timeout)
        backoff = Backoff(min(1.0, self.section.retry_s), self.section.retry_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                await self._loop(session, context, backoff)
            except asyncio.CancelledError:  # the agent stops: what was gathered is kept
                self._flush_reports()
                self.queue.close()
                raise

    async def _loop(self, session: aiohttp.ClientSession, context: Any, backoff: Backoff) -> None:
        while True:
            try:
                if not self.core.store.bootstrapped:
                    await self.bootstrap(session, context)
                self._announce()
                await self._drain(session, context)
                backoff.reset()
            except CmsUnavailable as exc:
                self.queue.retry_later()
                delay = backoff.next()
                (log.warning if backoff.attempts == 1 else log.debug)(
                    "talq.cms_unavailable",
                    error=str(exc),
                    retry_s=round(delay, 2),
                    waiting=self.queue.waiting(),
                )
                await asyncio.sleep(delay)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_S):
                    await self._wake.wait()
            self._flush_reports()

    def _flush_reports(self) -> None:
        for body in self.reporter.reports():
            self.queue.put("POST", "/log-reports", body)

    def _announce(self) -> None:
        """Devices the CMS has not been told of yet (new in the config) are queued."""
        store = self.core.store
        catalogue = self.core.catalogue()
        fresh = [
            (a, n)
            for a, (n, _, _) in catalogue.items()
            if n not in store.announced and a != store.gateway_address
        ]
        if not fresh:
            return
        body = [{"address": a, "name": n, "class": catalogue[a][1]} for a, n in fresh]
        self.queue.put("POST", "/devices", body)
        store.announced |= {n for _, n in fresh}
        store.save()

    async def _drain(self, session: aiohttp.ClientSession, context: Any) -> None:
        self._flush_reports()
        for _ in range(10_000):  # bounded: the loop comes back here at once
            item = self.queue.next()
            if item is None:
                return
            message, queued = item
            if queued.note is not None:
                log.warning("talq.queue_note", note=queued.note, data=queued.body)
            else:
                status, _ = await self.call(
                    session,
                    context,
                    queued.method,
                    queued.path,
                    queued.body,
                    request_id=queued.request_id,
                )
                if status >= 300:  # refused for good: said loudly, not sent for ever
                    self.refused += 1
                    log.error("talq.cms_refused", path=queued.path, status=status)
                else:
                    self.sent += 1
            self.queue.done(message)

    # --- bootstrap ------------------------------------------------------------------

    async def bootstrap(self, session: aiohttp.ClientSession, context: Any) -> None:
        store = self.core.store
        own = await self.core.device_document(store.gateway_address, read=False)
        own["address"] = NIL
        for fn in own["functions"]:
            if fn["type"] == "GatewayFunction":
                fn["gatewayAddress"] = {"type": "AttributeString", "value": NIL}
                fn["cmsAddress"] = {"type": "AttributeString", "value": NIL}
        status, answer = await self.call(session, context, "POST", "/devices", [own], client=NIL)
        self._expect(status, "gateway announcement")
        gateway_address, cms_address = _addresses(answer)
        if gateway_address:
            store.gateway_address = gateway_address
        store.cms_address = cms_address or store.cms_address
        store.save()
        classes = self.core.classes()
        gateway_class = mapping.class_document(
            mapping.GATEWAY_CLASS, classes[mapping.GATEWAY_CLASS]
        )
        status, _ = await self.call(session, context, "POST", "/device-classes", [gateway_class])
        self._expect(status, "gateway device class")
        doc = await self.core.device_document(store.gateway_address, read=False)
        status, _ = await self.call(
            session, context, "PATCH", f"/devices/{store.gateway_address}", doc
        )
        self._expect(status, "gateway attributes")
        status, _ = await self.call(session, context, "POST", "/services", services(self.core))
        self._expect(status, "services")
        others = [
            mapping.class_document(n, f)
            for n, f in sorted(classes.items())
            if n != mapping.GATEWAY_CLASS
        ]
        if others:
            status, _ = await self.call(session, context, "POST", "/device-classes", others)
            self._expect(status, "device classes")
        store.bootstrapped = True
        store.save()
        log.info("talq.bootstrapped", gateway=store.gateway_address, cms=store.cms_address)

    def _expect(self, status: int, step: str) -> None:
        if status >= 300 and status != 409:  # 409: the CMS has it already (a retry)
            raise CmsUnavailable(f"bootstrap: {step} answered {status}")

    # --- one request ----------------------------------------------------------------

    async def call(
        self,
        session: aiohttp.ClientSession,
        context: Any,
        method: str,
        path: str,
        body: Any,
        *,
        client: str | None = None,
        request_id: str | None = None,
    ) -> tuple[int, Any]:
        params = {
            "clientAddress": client or self.core.store.gateway_address,
            "talqRequestId": request_id or str(uuid.uuid4()),
        }
        data = json.dumps(body).encode()
        headers = {
            "talq-api-version": API_VERSION,
            "Content-Type": "application/json",
            "Cache-Control": "no-transform",
        }
        url = self.section.cms_uri.rstrip("/") + path
        started = time.monotonic()
        try:
            async with session.request(
                method, url, params=params, data=data, headers=headers, ssl=context
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise CmsUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if status >= 500 or (status == 403 and self.core.store.bootstrapped):
            if status == 403:  # the CMS forgot us: bootstrap again
                self.core.store.bootstrapped = False
                self.core.store.save()
            raise CmsUnavailable(f"{method} {path}: {status}")
        log.debug(
            "talq.cms_call",
            method=method,
            path=path,
            status=status,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def _tls(self) -> ssl.SSLContext | None:
        section = self.section
        if section.mode == "test" and not section.cms_uri.startswith("https"):
            return None
        context = ssl.create_default_context(
            cafile=str(section.ca_file) if section.ca_file else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if section.cert_file and section.key_file:  # mutual: the CMS knows us by it
            context.load_cert_chain(str(section.cert_file), str(section.key_file))
        return context


def _addresses(answer: Any) -> tuple[str | None, str | None]:
    """The gatewayAddress and cmsAddress the CMS gave in its answer to the announcement."""
    devices = answer if isinstance(answer, list) else [answer]
    for device in devices:
        if not isinstance(device, dict):
            continue
        for fn in device.get("functions") or []:
            if isinstance(fn, dict) and fn.get("type") == "GatewayFunction":
                gw = (fn.get("gatewayAddress") or {}).get("value")
                cms = (fn.get("cmsAddress") or {}).get("value")
                return (gw if isinstance(gw, str) else None, cms if isinstance(cms, str) else None)
        address = device.get("address")
        if isinstance(address, str) and address != NIL:
            return address, None
    return None, None
