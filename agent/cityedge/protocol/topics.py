"""The topic layout: `<prefix>/<site>/<gateway>/<suffix>`, one suffix per message kind.

The only place that knows it: the gateway's uplink, the command post and the
tools compose and split topics with these functions, never by hand. Also the
names a site or gateway may have, since both become topic levels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

DEFAULT_PREFIX: Final = "cityedge/v2"
ANY: Final = "+"  # one whole topic level, in a subscription filter

# Gateway and site ids: no '.', which RabbitMQ's and NATS's MQTT mapping turn into a level.
NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NAME_RULE: Final = "1-64 of A-Z a-z 0-9 _ -"

SUFFIX_BY_KIND = {
    "state": "state",
    "telemetry": "telemetry",
    "event": "events",
    "command": "cmd",
    "result": "cmd/result",
}
KIND_BY_SUFFIX = {suffix: kind for kind, suffix in SUFFIX_BY_KIND.items()}


class TopicError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Topic:
    prefix: str
    site: str
    gateway: str
    kind: str

    def __str__(self) -> str:
        return topic_for(self.prefix, self.site, self.gateway, self.kind)


def topic_for(prefix: str, site: str, gateway: str, kind: str) -> str:
    """The topic of `kind` messages of one gateway; `ANY` as site or gateway makes a filter."""
    return f"{prefix}/{site}/{gateway}/{SUFFIX_BY_KIND[kind]}"


def watch_filter(prefix: str = DEFAULT_PREFIX) -> str:
    """Every gateway of every site under `prefix`."""
    return f"{prefix}/{ANY}/{ANY}/#"


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> Topic:
    """Split a topic into site, gateway and message kind; TopicError says what does not fit."""
    head = prefix + "/"
    if not topic.startswith(head):
        raise TopicError(f"topic {topic!r} is not under {prefix!r}")
    parts = topic[len(head) :].split("/", 2)
    if len(parts) < 3:
        raise TopicError(f"topic {topic!r}: expected {prefix}/<site>/<gateway>/<kind>")
    site, gateway, suffix = parts
    if NAME_PATTERN.match(site) is None or NAME_PATTERN.match(gateway) is None:
        raise TopicError(f"topic {topic!r}: site and gateway must be {NAME_RULE}")
    kind = KIND_BY_SUFFIX.get(suffix)
    if kind is None:
        known = ", ".join(SUFFIX_BY_KIND.values())
        raise TopicError(f"topic {topic!r}: unknown suffix {suffix!r} (expected one of {known})")
    return Topic(prefix, site, gateway, kind)
