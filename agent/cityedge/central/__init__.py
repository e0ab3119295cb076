"""The command post's side of the protocol, as a library: verify what gateways send,
watch a broker, sign and send commands. `cityedge central …` is its console."""

from cityedge.central.commands import (
    NoResult,
    SiteNotFound,
    match_result,
    new_command,
    send_command,
    trust_update_command,
)
from cityedge.central.link import BrokerError, BrokerUrl, BrokerUrlError, parse_broker_url
from cityedge.central.sequence import SeqStatus, SequenceTracker
from cityedge.central.trust import Trust, load_gateway_trust
from cityedge.central.verifier import Gap, GatewayStats, Outcome, Verdict, Verifier
from cityedge.central.watch import watch
from cityedge.protocol.topics import DEFAULT_PREFIX, Topic, parse_topic, topic_for, watch_filter

__all__ = [
    "DEFAULT_PREFIX",
    "BrokerError",
    "BrokerUrl",
    "BrokerUrlError",
    "Gap",
    "GatewayStats",
    "NoResult",
    "Outcome",
    "SeqStatus",
    "SequenceTracker",
    "SiteNotFound",
    "Topic",
    "Trust",
    "Verdict",
    "Verifier",
    "load_gateway_trust",
    "match_result",
    "new_command",
    "parse_broker_url",
    "parse_topic",
    "send_command",
    "topic_for",
    "trust_update_command",
    "watch",
    "watch_filter",
]
