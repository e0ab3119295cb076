"""Logger configurations and the log reports they produce (the data collection
service): which attributes of which devices the CMS wants, how often; the
reports themselves go to the CMS through the durable queue (`cms`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cityedge.gateway.talq.core import TalqCore
from cityedge.gateway.talq.errors import conflict, not_found, unprocessable
from cityedge.gateway.talq.http import Call, body_object, endpoint, require

MODES = ("PeriodicRecordingMode", "EventRecordingMode")


def _check(doc: dict[str, Any]) -> None:
    require(doc, "LoggerConfig", "address", "ownerCMS")
    mode = doc.get("recordingMode")
    if mode is not None and (not isinstance(mode, dict) or mode.get("type") not in MODES):
        raise unprocessable(
            "serviceConstraintExceeded", f"recording mode: this gateway supports {', '.join(MODES)}"
        )


def routes(core: TalqCore) -> list[web.RouteDef]:
    loggers = core.store.loggers

    async def add(call: Call) -> tuple[int, Any]:
        doc = body_object(call, "LoggerConfig")
        _check(doc)
        if doc["address"] in loggers:
            raise conflict(f"logger {doc['address']!r} exists")
        loggers[doc["address"]] = doc
        core.store.save()
        return 201, None

    async def get_one(call: Call) -> tuple[int, Any]:
        doc = loggers.get(call.match["loggerAddress"])
        if doc is None:
            raise not_found(f"logger {call.match['loggerAddress']}")
        return 200, doc

    async def update(call: Call) -> tuple[int, Any]:
        doc = body_object(call, "LoggerConfig")
        _check(doc)
        if call.match["loggerAddress"] not in loggers:
            raise not_found(f"logger {call.match['loggerAddress']}")
        if doc["address"] != call.match["loggerAddress"]:
            raise unprocessable("payloadError", "LoggerConfig: address differs from the path")
        loggers[doc["address"]] = doc
        core.store.save()
        return 200, doc

    async def delete(call: Call) -> tuple[int, Any]:
        doc = loggers.pop(call.match["loggerAddress"], None)
        if doc is None:
            raise not_found(f"logger {call.match['loggerAddress']}")
        core.store.save()
        return 200, doc

    async def count_reports(call: Call) -> tuple[int, Any]:
        return 200, len(loggers)

    async def report(call: Call) -> tuple[int, Any]:
        # reports are pushed to the CMS as they are made; on demand: an empty report
        if call.match["loggerAddress"] not in loggers:
            raise not_found(f"logger {call.match['loggerAddress']}")
        return 200, {"address": call.match["loggerAddress"], "entries": []}

    one = "/logger-configs/{loggerAddress}"
    return [
        web.post("/logger-configs", endpoint(add)),
        web.get(one, endpoint(get_one)),
        web.put(one, endpoint(update)),
        web.delete(one, endpoint(delete)),
        web.get("/log-reports/count", endpoint(count_reports)),
        web.get("/log-reports/{loggerAddress}", endpoint(report)),
    ]
