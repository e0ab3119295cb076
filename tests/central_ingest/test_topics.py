"""Topic <-> routing key / subject mapping, fuzzed: every topic a gateway can publish
survives the round trip RabbitMQ and NATS make it take, and lands under the bindings
and filters ingest declares for its site (and no other site's)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.central.ingest.sources.base import (
    GATEWAY_KINDS,
    dotted_filters,
    from_dotted,
    mqtt_filters,
    to_dotted,
)
from cityedge.protocol.topics import NAME_PATTERN, parse_topic, topic_for

names = st.from_regex(NAME_PATTERN, fullmatch=True)


def _amqp_match(binding: str, key: str) -> bool:
    """AMQP topic matching: '*' one word, '#' zero or more."""
    pattern = re.escape(binding).replace(r"\*", r"[^.]+").replace(r"\#", r".*")
    return re.fullmatch(pattern, key) is not None


@settings(max_examples=300, deadline=None)
@given(names, names, names, st.sampled_from(GATEWAY_KINDS))
def test_the_round_trip_keeps_the_topic_and_the_site_filter_holds(
    site: str, other: str, gateway: str, kind: str
) -> None:
    topic = topic_for("cityedge/v2", site, gateway, kind)
    key = to_dotted(topic)
    assert from_dotted(key) == topic
    assert parse_topic(from_dotted(key)).gateway == gateway
    assert any(_amqp_match(b, key) for b in dotted_filters("cityedge/v2", site))
    assert any(_amqp_match(b, key) for b in dotted_filters("cityedge/v2"))
    if other != site:
        assert not any(_amqp_match(b, key) for b in dotted_filters("cityedge/v2", other))
    assert len(mqtt_filters("cityedge/v2", site)) == len(GATEWAY_KINDS)
