"""Bytes on the wire per reading on the 100-lamppost street: protocol v2 beside v1 and
beside a ThingsBoard-style JSON encoding of the same readings, in the same run; and
what sealing and verifying cost per reading, v2 against v1.

The street is the simulator's (`cityedge.street`): 100 lampposts, every point of the
lamppost profile, polled once a (simulated) second. Their registers are decoded by
the Modbus codec, the readings go through the real pipeline (deadband, full report)
into a real outbox, whose real sealer makes the v2 messages. Beside it, the same
stored entries are sealed as v1 did (a copy of the v1 code path, kept here only) and
written as the JSON a ThingsBoard gateway publishes:
`{"lamppost-001": [{"ts": 1764000000123, "values": {"power": 61.5, …}}], …}`.
"On the wire" counts each MQTT 5 PUBLISH (QoS 1): fixed header, topic, packet id,
property length and payload.

Two scenarios: every reading of every poll (the full report, ThingsBoard's
default), and report by exception (the profile's deadbands, a full report every
300 s).

    .venv/bin/python bench/wire_bytes.py [--seconds 600] [--devices 100]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cityedge.gateway.pipeline as pipeline_module
import cityedge.street.modbus_devices as devices_module
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.gateway.outbox import Entry, Outbox
from cityedge.gateway.pipeline import Pipeline
from cityedge.protocol.decoding import EnvelopeError, unpack
from cityedge.protocol.entries import packed_reading
from cityedge.protocol.keys import PublicKey, SigningKey
from cityedge.protocol.opening import open_message
from cityedge.protocol.readings import array_header
from cityedge.protocol.sealing import message_sealer
from cityedge.protocol.topics import topic_for
from cityedge.sdk.model import Quality, Reading
from cityedge.street.modbus_devices import Lamppost

GATEWAY, SITE = "gw-street", "main-street"
T0 = 1_764_000_000.0
JSON_TOPIC = "v1/gateway/telemetry"  # ThingsBoard's gateway API topic


# --- v1, as it was: kept here only, to measure against -------------------------------

V1_CONTEXT = b"cityedge/v2/gateway-message\x00"
_V1_KEYS = {k: msgpack.packb(k) for k in ("v", "gw", "site", "kind", "seq", "ts", "hist", "data")}


def seal_v1(
    key: SigningKey, *, seq: int, ts: float, historical: bool, entries: bytes, count: int
) -> bytes:
    """A v1 telemetry message: the stored entries concatenated under a map of 8."""
    head = b"".join((
        b"\x88", _V1_KEYS["v"], b"\x01", _V1_KEYS["gw"], msgpack.packb(GATEWAY),
        _V1_KEYS["site"], msgpack.packb(SITE), _V1_KEYS["kind"], msgpack.packb("telemetry"),
        _V1_KEYS["seq"], msgpack.packb(seq), _V1_KEYS["ts"], msgpack.packb(float(ts)),
        _V1_KEYS["hist"], b"\xc3" if historical else b"\xc2", _V1_KEYS["data"],
    ))  # fmt: skip
    body = head + array_header(count) + entries
    envelope = {"v": 1, "kid": key.key_id, "body": body, "sig": key.sign(V1_CONTEXT + body)}
    return cast(bytes, msgpack.packb(envelope))


def reading_entry_v1(r: Reading) -> bytes:
    """v1's reading entry (the plain-types path): packed by msgpack.packb each time."""
    value = r.value
    ts = r.ts if type(r.ts) is float else float(r.ts)
    if not math.isfinite(ts):
        raise ValueError(f"reading ts {r.ts!r}: expected a finite number of seconds")
    fields: list[Any] = [str(r.device), str(r.point), value, ts]
    unit = r.unit if r.unit is None or type(r.unit) is str else str(r.unit)
    if r.quality is not Quality.GOOD and Quality(r.quality) is not Quality.GOOD:
        fields += [unit, Quality(r.quality).value]
    elif unit is not None:
        fields.append(unit)
    return cast(bytes, msgpack.packb(fields))


def _v1_sealer(key: SigningKey) -> Callable[..., bytes]:
    def seal(*, kind: str, seq: int, historical: bool, entries: bytes, count: int) -> bytes:
        return seal_v1(key, seq=seq, ts=time.time(), historical=historical, entries=entries,
                       count=count)  # fmt: skip

    return seal


def open_v1(payload: bytes, public: PublicKey) -> list[Reading]:
    """v1's opening of a telemetry message: envelope, signature, then every entry."""
    outer = unpack(payload, "envelope")
    if not isinstance(outer, dict) or set(outer) != {"v", "kid", "body", "sig"}:
        raise EnvelopeError("malformed", "envelope")
    body = outer["body"]
    if not public.verify(outer["sig"], V1_CONTEXT + body):
        raise EnvelopeError("bad-signature", "v1")
    fields = unpack(body, "body")
    out = []
    for entry in fields["data"]:  # v1's fast path for the common shapes
        device, point, value, ts = entry[0], entry[1], entry[2], entry[3]
        unit = entry[4] if len(entry) == 5 else None
        if not (
            type(device) is str and type(point) is str
            and type(value) in (bool, int, float, str) and type(ts) in (int, float)
            and math.isfinite(ts) and (unit is None or type(unit) is str)
        ):  # fmt: skip
            raise EnvelopeError("malformed", "entry")
        out.append(Reading(device, point, value, float(ts), unit, Quality.GOOD))
    return out


# --- JSON, as a ThingsBoard gateway sends it -------------------------------------------


def thingsboard_json(entries: list[list[Any]]) -> bytes:
    doc: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        rows = doc.setdefault(e[0], [])
        ms = round(e[3] * 1000)
        if not rows or rows[-1]["ts"] != ms:
            rows.append({"ts": ms, "values": {}})
        rows[-1]["values"][e[1]] = e[2]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def publish_bytes(topic: str, payload: bytes) -> int:
    """One MQTT 5 PUBLISH, QoS 1: fixed header, topic, packet id, properties, payload."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + len(payload)
    length = 1
    while remaining >= 128**length:
        length += 1
    return 1 + length + remaining


# --- the street, on a simulated clock ------------------------------------------------------


@contextmanager
def simulated_clock() -> Iterator[list[float]]:
    """The pipeline's and the lampposts' monotonic clocks, advanced by the caller."""
    now = [1000.0]
    fake = SimpleNamespace(monotonic=lambda: now[0], time=time.time)
    modules = (vars(pipeline_module), vars(devices_module))
    saved = [m["time"] for m in modules]
    for m in modules:
        m["time"] = fake
    try:
        yield now
    finally:
        for m, module_time in zip(modules, saved, strict=True):
            m["time"] = module_time


class Tally:
    """Per message: the v2 payload as sealed, and the same entries as v1 and JSON."""

    def __init__(self, key: SigningKey, topic: str) -> None:
        self.key, self.topic = key, topic
        self.v2_seal = message_sealer(key, gateway=GATEWAY, site=SITE)
        self.readings = self.messages = 0
        self.wire = {"v2": 0, "v1": 0, "json": 0}
        self.payload = {"v2": 0, "v1": 0, "json": 0}
        self.samples: list[tuple[bytes, int]] = []  # (joined entries, count) for the timings

    def seal(self, *, kind: str, seq: int, historical: bool, entries: bytes, count: int) -> bytes:
        payload = self.v2_seal(
            kind=kind, seq=seq, historical=historical, entries=entries, count=count
        )
        if kind != "telemetry":
            return payload
        v1 = seal_v1(self.key, seq=seq, ts=T0, historical=historical, entries=entries, count=count)
        decoded = msgpack.unpackb(array_header(count) + entries)
        as_json = thingsboard_json(decoded)
        for name, data, topic in (
            ("v2", payload, self.topic), ("v1", v1, self.topic), ("json", as_json, JSON_TOPIC),
        ):  # fmt: skip
            self.payload[name] += len(data)
            self.wire[name] += publish_bytes(topic, data)
        self.readings += count
        self.messages += 1
        if len(self.samples) < 40:
            self.samples.append((entries, count))
        return payload


def run_street(devices: int, seconds: int, full_report: float, workdir: Path) -> Tally:
    key = SigningKey.from_seed(bytes(range(32)))
    tally = Tally(key, topic_for("cityedge/v2", SITE, GATEWAY, "telemetry"))
    profile = resolve_profile("lamppost")
    with simulated_clock() as now:
        lamps = [Lamppost(f"lamppost-{i:03d}", profile, seed=i) for i in range(1, devices + 1)]
        catalogue = {
            (lamp.name, p.name): p.info() for lamp in lamps for p in profile.points.values()
        }
        outbox = Outbox.open(workdir / f"outbox-{full_report}.db", seal=tally.seal,
                             max_bytes=1 << 30, max_age=1e9)  # fmt: skip
        outbox.online = True
        pipeline = Pipeline(outbox, lambda: catalogue, full_report_interval=full_report,
                            commit_interval=0.1, queue_size=100_000)  # fmt: skip
        for second in range(seconds):
            now[0] += 1.0
            for n, lamp in enumerate(lamps):
                lamp.update()
                ts = T0 + second + n * 0.0004  # one request per lamppost, 40 ms a round
                pipeline.accept([
                    Reading(lamp.name, p.name, lamp.get(p.name), ts, p.unit)
                    for p in profile.points.values()
                ])  # fmt: skip
            pipeline.commit()  # polls are aligned: one commit window holds a round
            while (message := outbox.next_message(live_after=0, backlog=True)) is not None:
                outbox.ack([message])
        outbox.close()
    return tally


# --- costs ---------------------------------------------------------------------------


def per_reading_us(fn: Callable[[], object], readings: int, seconds: float = 1.5) -> float:
    """Microseconds per reading, the best of five rounds (the machine is shared)."""
    best = math.inf
    for _ in range(5):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5 or calls == 0:
            fn()
            calls += 1
        best = min(best, elapsed / calls / readings * 1e6)
    return best


def costs(tally: Tally) -> dict[str, float]:
    key = tally.key
    trusted = {key.key_id: key.public_key}
    samples = tally.samples
    readings = sum(count for _, count in samples)
    v2_payloads = [tally.v2_seal(kind="telemetry", seq=1, historical=False, entries=e, count=c)
                   for e, c in samples]  # fmt: skip
    v1_payloads = [seal_v1(key, seq=1, ts=T0, historical=False, entries=e, count=c)
                   for e, c in samples]  # fmt: skip
    decoded = [msgpack.unpackb(array_header(c) + e) for e, c in samples]
    as_readings = [
        [Reading(x[0], x[1], x[2], x[3], x[4] if len(x) > 4 else None) for x in d] for d in decoded
    ]

    def encode2() -> None:  # the pipeline's part: a reading as the outbox keeps it
        for rs in as_readings:
            for r in rs:
                packed_reading(r)

    def encode1() -> None:
        for rs in as_readings:
            for r in rs:
                reading_entry_v1(r)

    def seal2() -> None:
        for e, c in samples:
            tally.v2_seal(kind="telemetry", seq=1, historical=False, entries=e, count=c)

    def seal1() -> None:
        for e, c in samples:
            seal_v1(key, seq=1, ts=T0, historical=False, entries=e, count=c)

    def open2() -> None:
        for p in v2_payloads:
            open_message(p, trusted)

    def open1() -> None:
        for p in v1_payloads:
            open_v1(p, key.public_key)

    def committed(version: str) -> Callable[[], None]:
        """A reading's whole way into a real outbox: encode, seal, insert, commit (fsync)."""
        sealer = tally.v2_seal if version == "v2" else _v1_sealer(key)
        box = Outbox.open(Path(tempfile.mkdtemp(prefix="cityedge-cost-")) / "o.db",
                          seal=sealer, max_bytes=1 << 30, max_age=1e9)  # fmt: skip
        box.online = True

        def entry(r: Reading) -> Entry:  # as the pipeline makes it
            if version == "v1":
                return Entry("telemetry", 1, r.ts, reading_entry_v1(r))
            return Entry("telemetry", 1, r.ts, *packed_reading(r))

        def run() -> None:
            for rs in as_readings:
                box.add([entry(r) for r in rs])
                box.commit()
            while (message := box.next_message(live_after=0, backlog=True)) is not None:
                box.ack([message])

        return run

    return {name: per_reading_us(fn, readings) for name, fn in (
        ("commit_v2", committed("v2")), ("commit_v1", committed("v1")),
        ("encode_v2", encode2), ("encode_v1", encode1), ("seal_v2", seal2), ("seal_v1", seal1),
        ("open_v2", open2), ("open_v1", open1),
    )}  # fmt: skip


def report(title: str, tally: Tally) -> None:
    n = tally.readings
    print(f"\n{title}: {n} readings in {tally.messages} messages "
          f"({n / max(tally.messages, 1):.0f} readings a message)")  # fmt: skip
    print(f"  {'':6} {'wire B/reading':>15} {'payload B/reading':>18}")
    for name in ("v2", "v1", "json"):
        print(f"  {name:6} {tally.wire[name] / n:15.2f} {tally.payload[name] / n:18.2f}")
    v2, v1, js = (tally.wire[k] / n for k in ("v2", "v1", "json"))
    print(f"  v2/json {v2 / js:.3f} (target <= 0.5)   v2/v1 {v2 / v1:.3f}   "
          f"v2 <= 10 B/reading: {'yes' if v2 <= 10 else 'NO'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=600)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cityedge-wire-"))
    points = len(resolve_profile("lamppost").points)
    print(f"street: {args.devices} lampposts x {points} points, 1 s polls, "
          f"{args.seconds} simulated s")  # fmt: skip
    every = run_street(args.devices, args.seconds, 0.0, workdir)
    report("every reading of every poll", every)
    by_exception = run_street(args.devices, args.seconds, 300.0, workdir)
    report("report by exception (deadbands, full report every 300 s)", by_exception)
    c = costs(every)
    print("\ncost per reading, us (best of 5; same messages, same key)")
    e2, e1, s2, s1 = c["encode_v2"], c["encode_v1"], c["seal_v2"], c["seal_v1"]
    print(f"  encode  v2 {e2:.2f}  v1 {e1:.2f}  (the pipeline, as a reading enters the outbox)")
    print(f"  seal    v2 {s2:.2f}  v1 {s1:.2f}  (at the commit: message, deflate, signature)")
    print(f"  encode + seal  v2 {e2 + s2:.2f}  v1 {e1 + s1:.2f}  v2/v1 {(e2 + s2) / (e1 + s1):.2f}")
    print(f"  outbox commit (encode, seal, insert, fsync)  v2 {c['commit_v2']:.2f}  "
          f"v1 {c['commit_v1']:.2f}  v2/v1 {c['commit_v2'] / c['commit_v1']:.2f}")  # fmt: skip
    print(f"  verify  v2 {c['open_v2']:.2f}  v1 {c['open_v1']:.2f}  "
          f"v2/v1 {c['open_v2'] / c['open_v1']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
