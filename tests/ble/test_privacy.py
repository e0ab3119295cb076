"""Privacy by construction: a street full of phones leaves no trace in the gateway.

Thousands of advertisements from random addresses — phone beacons, earbuds, a
neighbour's own BTHome thermometer, garbage — are broadcast between the frames of
our two configured sensors. Afterwards none of those addresses (or names) may
appear in a reading, an event, a log line (structlog and stdlib logging), the
driver's health or catalogue, anything the driver object still references, or
its state directory. With `count_unknown = true` only a number is left.
"""

from __future__ import annotations

import gc
import io
import logging
import random
import re
import types
from pathlib import Path

import pytest

from cityedge.drivers.ble.bthome import encode, encrypt
from cityedge.drivers.ble.driver import BleDriver
from cityedge.sdk.driver import DriverEnv
from tests.ble.fake_bleak import FakeAir
from tests.ble.support import PLAIN, SEALED, SEALED_KEY, running, section, until

PHONES = 5000
MAC_TOKEN = re.compile(r"(?i)(?<![0-9a-f])[0-9a-f]{2}(?:[:-]?[0-9a-f]{2}){5}(?![0-9a-f])")


def canonical(token: str) -> str:
    return re.sub(r"[:-]", "", token).upper()


class Street:
    """Random advertisers, remembered by the test only, so it can look for them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.addresses: set[str] = set()  # canonical: 12 upper-case hex digits
        self.names: set[str] = set()

    def address(self) -> str:
        while True:
            raw = self.rng.randbytes(6)
            text = ":".join(f"{b:02X}" for b in raw)
            if text not in (PLAIN, SEALED):
                self.addresses.add(raw.hex().upper())
                return text

    def advertise(self, air: FakeAir) -> int:
        rng = self.rng
        address = self.address()
        kind = rng.random()
        if kind < 0.4:  # a phone's continuity beacon
            return air.broadcast(address, manufacturer_data={0x004C: rng.randbytes(14)},
                                 rssi=rng.randint(-100, -30))  # fmt: skip
        if kind < 0.6:  # earbuds announcing themselves by name, Fast Pair service data
            name = f"Galaxy Buds {rng.randbytes(3).hex()}"
            self.names.add(name)
            fast_pair = {"0000fe2c-0000-1000-8000-00805f9b34fb": rng.randbytes(3)}
            return air.broadcast(address, service_data=fast_pair, name=name)
        if kind < 0.8:  # someone's own BTHome thermometer on a balcony
            frame = encode([(0x02, rng.uniform(-20, 40)), (0x03, rng.uniform(0, 100))],
                           packet_id=rng.randint(0, 255))  # fmt: skip
            return air.broadcast(address, bthome=frame)
        if kind < 0.9:  # an encrypted one, key unknown to us
            mac, key = bytes.fromhex(address.replace(":", "")), rng.randbytes(16)
            frame = encrypt(
                encode([(0x21, True)]), mac=mac, bindkey=key, counter=rng.randint(0, 99)
            )
            return air.broadcast(address, bthome=frame)
        return air.broadcast(address, bthome=rng.randbytes(rng.randint(0, 40)))  # garbage


def strings_reachable_from(root: object, limit: int = 500_000) -> list[str | bytes]:
    """Every str/bytes the object graph under `root` holds (modules, classes and code
    excluded: they are the program, not data it kept)."""
    skip = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
            types.CodeType, types.FrameType, types.MethodDescriptorType)  # fmt: skip
    seen: set[int] = set()
    stack: list[object] = [root]
    found: list[str | bytes] = []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        assert len(seen) < limit, "object graph larger than expected"
        if isinstance(obj, str | bytes | bytearray):
            found.append(bytes(obj) if isinstance(obj, bytearray) else obj)
            continue
        stack.extend(gc.get_referents(obj))
    return found


def leaks(texts: list[str | bytes], street: Street) -> set[str]:
    hits: set[str] = set()
    for text in texts:
        if isinstance(text, bytes):
            if len(text) == 6 and text.hex().upper() in street.addresses:
                hits.add(text.hex())
            text = text.decode("latin-1")
        hits |= {t for t in MAC_TOKEN.findall(text) if canonical(t) in street.addresses}
        hits |= {name for name in street.names if name in text}
    return hits


@pytest.mark.parametrize(
    ("scanning", "count_unknown"), [("active", False), ("active", True), ("passive", True)]
)
async def test_a_street_full_of_phones_leaves_no_trace(
    scanning: str,
    count_unknown: bool,
    air: FakeAir,
    env: DriverEnv,
    structlog_output: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    street = Street(seed=20261123)
    driver = BleDriver(
        section(scanning=scanning, count_unknown=count_unknown),
        env,
        scanner_factory=air.scanner_factory,
    )
    heard_from_phones = 0
    ours = 0
    async with running(driver) as sink:
        await until(lambda: bool(air.running))
        for i in range(PHONES):
            heard_from_phones += street.advertise(air)
            if i % 250 == 0:  # our sensors, in the middle of it all
                ours += 1
                air.broadcast(PLAIN, bthome=encode([(0x02, 20.0 + ours / 10)], packet_id=ours))
                sealed = encrypt(encode([(0x11, ours % 2 == 0)]), mac=bytes.fromhex("5448E68F80A5"),
                                 bindkey=bytes.fromhex(SEALED_KEY), counter=ours)  # fmt: skip
                air.broadcast(SEALED, bthome=sealed)
        # and one bad frame from a configured sensor, so we know logging is captured at all
        air.broadcast(SEALED, bthome=b"\x41\x00")
        await until(lambda: len([r for r in sink.readings if r.point != "rssi"]) == 2 * ours)
        await until(lambda: "ble.frame_rejected" in structlog_output.getvalue())

    print(f"{heard_from_phones} phone advertisements reached the gate, {ours} frames of ours")
    assert heard_from_phones > PHONES * (0.9 if scanning == "active" else 0.3)  # the gate was hit
    # no reading, no event but from our own sensors and driver
    assert {r.device for r in sink.readings} == {"thermo-12", "bin-12"}
    assert {e.source for e in sink.events} <= {"thermo-12", "bin-12", "ble-cabinet-12"}
    assert not leaks([repr(item) for item in sink.items], street)

    # no log line
    logged = structlog_output.getvalue()
    assert '"event": "ble.scanning"' in logged and '"device": "bin-12"' in logged
    assert not leaks([logged, caplog.text], street)

    # nothing kept: health, catalogue, the driver's whole object graph, its state dir
    assert not leaks([repr(driver.health()), repr(driver.catalogue())], street)
    assert not leaks(strings_reachable_from(driver), street)
    assert not any(Path(env.state_dir).iterdir())  # noqa: ASYNC240 - a one-off look, test only

    # with count_unknown, a number and only a number
    adapter = next(h for h in driver.health() if h.device == "ble-cabinet-12:hci0")
    if count_unknown:
        assert driver.unknown_advertisements == heard_from_phones
        assert f"{heard_from_phones} advertisements from unlisted devices" in (adapter.detail or "")
    else:
        assert driver.unknown_advertisements is None
        assert "unlisted" not in (adapter.detail or "")


def test_the_leak_detector_finds_a_planted_address(air: FakeAir, env: DriverEnv) -> None:
    """The graph walk and the matcher above would see a leak if there were one."""
    street = Street(seed=1)
    planted = street.address()
    driver = BleDriver(section(), env, scanner_factory=air.scanner_factory)
    assert PLAIN in strings_reachable_from(driver)  # the walk reaches the allowlist itself
    driver._sensors["thermo-12"].health.detail = f"last stranger: {planted.lower()}"
    assert leaks(strings_reachable_from(driver), street) == {planted.lower()}
    driver._sensors["thermo-12"].health.detail = None
    driver._sensors["thermo-12"].points["x"] = bytes.fromhex(planted.replace(":", ""))  # type: ignore[assignment]
    assert leaks(strings_reachable_from(driver), street)
