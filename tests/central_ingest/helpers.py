"""Sealed messages from simulated gateways, decoded through the real verifier."""

from __future__ import annotations

from cityedge.central.ingest.decode import Decoded, Decoder
from cityedge.central.verifier import Verifier
from cityedge.protocol.announcements import seal_key_announcement
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import seal_object
from cityedge.protocol.topics import DEFAULT_PREFIX, topic_for
from cityedge.street.fleet import SimulatedGateway

TS = 1_790_000_000.0
SITE = "town-01"


def fleet(count: int, lampposts: int = 3, site: str = "town-01",
          prefix: str = DEFAULT_PREFIX) -> list[SimulatedGateway]:  # fmt: skip
    return [
        SimulatedGateway(
            SigningKey.from_seed(bytes([i + 1]) * 32), f"gw-{i:03d}", site, lampposts, prefix=prefix
        )
        for i in range(count)
    ]


def decoder_for(gateways: list[SimulatedGateway], prefix: str = DEFAULT_PREFIX) -> Decoder:
    keys = {g.key.key_id: g.key.public_key for g in gateways}
    return Decoder(Verifier(keys, prefix=prefix))


def sealed(gateway: SimulatedGateway, count: int, ts: float = 1_790_000_000.0) -> list[bytes]:
    return [gateway.telemetry(ts + i)[1] for i in range(count)]


def decoded(decoder: Decoder, gateway: SimulatedGateway, payloads: list[bytes]) -> list[Decoded]:
    out = []
    for payload in payloads:
        result = decoder.decode(gateway.topic, payload)
        assert isinstance(result, Decoded), result
        out.append(result)
    return out


def rotated_state(gateway: str, old: SigningKey, new: SigningKey,
                  prefix: str = DEFAULT_PREFIX) -> tuple[str, bytes]:  # fmt: skip
    """The state a gateway sends after `cityedge keys rotate`: signed by the new key,
    carrying the old key's announcement of it (docs/protocol.md §12)."""
    announcement = seal_key_announcement(old, new.public_key, gateway=gateway, ts=TS)
    data = {"status": "online", "key_announcements": [announcement]}
    payload = seal_object(new, gateway=gateway, site=SITE, kind="state", seq=0, ts=TS, data=data)
    return topic_for(prefix, SITE, gateway, "state"), payload


def telemetry(key: SigningKey, gateway: str, first_seq: int = 1,
              prefix: str = DEFAULT_PREFIX) -> SimulatedGateway:  # fmt: skip
    return SimulatedGateway(key, gateway, SITE, lampposts=2, seq=first_seq - 1, prefix=prefix)
