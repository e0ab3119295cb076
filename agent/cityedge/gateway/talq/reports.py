"""Log reports: readings and events the CMS's logger configurations ask for, as
`LogReport` bodies (one per logger per flush).

A reading of a point becomes an `AttributeLogData` of every TALQ attribute read
from that point (mapping), for each logger whose sources and content take it; an
alarm of the lighting controller becomes an `EventLogData`. Readings arrive when
they change (the pipeline's deadbands) and at the full-report interval, so a
periodic recording mode is met by reporting what changed, when it changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from cityedge.gateway.talq import mapping
from cityedge.gateway.talq.core import TalqCore
from cityedge.sdk.model import Event, Reading

MAX_ENTRIES = 500  # per report: a flush after an outage is cut into several
EVENT_TYPES = {
    "lighting.lamp_failure": ("lampMonitor", "lampFailure"),
    "lighting.driver_fault": ("lampMonitor", "controlGearFailure"),
    "lighting.day_burner": ("lampMonitor", "lampUnexpectedOn"),
    "lighting.not_following": ("lampActuator", "dimmingFailure"),
}


class Reporter:
    def __init__(self, core: TalqCore) -> None:
        self.core = core
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def take(self, items: Sequence[Reading | Event]) -> bool:
        loggers = self.core.store.loggers
        if not loggers:
            return False
        devices = self.core.agent.devices()
        taken = False
        for item in items:
            info = devices.get(item.source if isinstance(item, Event) else item.device)
            if info is None:
                continue
            address = self.core.store.address_of(info.name)
            for logger_address, logger in loggers.items():
                if not self._from(logger, info.name):
                    continue
                for entry in self._entries(logger, info, address, item):
                    self._pending.setdefault(logger_address, []).append(entry)
                    taken = True
        return taken

    def reports(self) -> list[dict[str, Any]]:
        out = []
        for address, entries in self._pending.items():
            for start in range(0, len(entries), MAX_ENTRIES):
                out.append({"address": address, "entries": entries[start : start + MAX_ENTRIES]})
        self._pending.clear()
        return out

    def _from(self, logger: dict[str, Any], device: str) -> bool:
        sources = logger.get("sourceAddresses")
        sources = sources if isinstance(sources, dict) else {}
        white, black = sources.get("whiteList"), sources.get("blackList")
        white = white if isinstance(white, list) else None
        black = black if isinstance(black, list) else None
        if white and device not in self.core.members(white):
            return False
        return not (black and device in self.core.members(black))

    def _entries(
        self, logger: dict[str, Any], info: Any, address: str, item: Reading | Event
    ) -> list[dict[str, Any]]:
        mode = logger.get("recordingMode")
        mode = mode if isinstance(mode, dict) else {}
        stamp = dt.datetime.fromtimestamp(item.ts, dt.UTC).isoformat()
        ref = logger.get("cmsRefId")
        extra = {"cmsRefId": ref} if isinstance(ref, str) else {}
        if isinstance(item, Event):
            if mode.get("type") != "EventRecordingMode" or item.kind not in EVENT_TYPES:
                return []
            function_id, event_type = EVENT_TYPES[item.kind]
            events = mode.get("sourceEvents")
            wanted = events.get("whiteList") if isinstance(events, dict) else None
            if wanted and event_type not in wanted:
                return []
            return [
                {
                    **extra,
                    "data": {
                        "type": "EventLogData",
                        "eventType": event_type,
                        "srcAddress": f"{address}/{function_id}",
                        "timestamp": stamp,
                        "startEndFlag": item.active is not False,
                    },
                }
            ]
        if mode.get("type") != "PeriodicRecordingMode":
            return []
        out = []
        for fn in mapping.functions_for(info):
            for attr in fn.attributes:
                if attr.point != item.point or not _wanted(mode, fn, attr):
                    continue
                value = mapping.attribute(
                    attr, item.value, dt.datetime.fromtimestamp(item.ts, dt.UTC)
                )
                out.append(
                    {
                        **extra,
                        "data": {
                            "type": "AttributeLogData",
                            "srcAddress": f"{address}/{fn.function_id}",
                            "timestamp": stamp,
                            "attributeName": attr.name,
                            "attributeValue": value,
                        },
                    }
                )
        return out


def _wanted(mode: dict[str, Any], fn: mapping.FunctionMap, attr: mapping.AttributeMap) -> bool:
    contents = mode.get("content")
    for content in contents if isinstance(contents, list) else []:
        if not isinstance(content, dict):
            continue
        scope = content.get("attributeScope")
        if scope is not None and scope != attr.scope:
            continue
        function = content.get("function")
        if not isinstance(function, dict):
            continue
        if function.get("functionId") not in (None, fn.function_id):
            continue
        if function.get("functionType") not in (None, fn.type):
            continue
        listed = function.get("attributes")
        listed = listed if isinstance(listed, list) else []
        names = [a.get("name") for a in listed if isinstance(a, dict)]
        if not names or attr.name in names:
            return True
    return False
