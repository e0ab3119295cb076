"""The gateway API server: the aiohttp application, and serving it (HTTPS with
mutual TLS, or plain HTTP when the config says `mode = "test"`)."""

from __future__ import annotations

import asyncio
import ssl

import structlog
from aiohttp import web

from cityedge.gateway.talq import control, devices, loggers
from cityedge.gateway.talq.core import TalqCore
from cityedge.gateway.talq.http import MAX_BODY, unsupported
from cityedge.gateway.talq.section import TalqSection

log = structlog.get_logger(__name__)


def application(core: TalqCore) -> web.Application:
    app = web.Application(middlewares=[unsupported], client_max_size=MAX_BODY)
    app.add_routes(devices.routes(core) + control.routes(core) + loggers.routes(core))
    return app


def tls_context(section: TalqSection) -> ssl.SSLContext:
    """TLS 1.2 or later, and the CMS must show a certificate from `ca_file`."""
    assert section.cert_file and section.key_file and section.ca_file  # the section checks
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(section.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(section.cert_file), str(section.key_file))
    return context


async def serve(core: TalqCore, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled (a supervised task of the runtime)."""
    section = core.section
    context = None if section.mode == "test" else tls_context(section)
    runner = web.AppRunner(application(core), access_log=None, handle_signals=False,
                           auto_decompress=False)  # fmt: skip
    await runner.setup()
    try:
        site = web.TCPSite(runner, section.host, section.port, ssl_context=context)
        await site.start()
        log.info("talq.serving", listen=section.listen, tls=context is not None)
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
