"""Sealed messages from simulated gateways, decoded through the real verifier."""

from __future__ import annotations

from cityedge.central.ingest.decode import Decoded, Decoder
from cityedge.central.verifier import Verifier
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.topics import DEFAULT_PREFIX
from cityedge.street.fleet import SimulatedGateway


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
