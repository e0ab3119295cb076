"""The decision path of one heard frame: session, counter, MIC, decryption, codec, alarms."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cityedge.drivers.lorawan.decoders import load_device_types
from cityedge.drivers.lorawan.fcnt import FrameCounters
from cityedge.drivers.lorawan.frames import build_uplink, parse_downlink, verify_mic
from cityedge.drivers.lorawan.keyring import Keyring, Session
from cityedge.drivers.lorawan.uplinks import MAX_REACKS, RECEIVE_DELAY1_US, Radio, UplinkDecoder
from cityedge.sdk.model import DeviceState, Event, Reading, Severity

NWK, APP = bytes(range(16)), bytes(range(100, 116))
BIN = Session("bin-0042", "waste-bin", 0x26011BDA, NWK, APP)
RADIO = Radio(rssi=-97.0, snr=7.5, spreading_factor=9, frequency=868.1, forwarders=("AA",))


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


def bin_payload(distance_mm: int, temp_c: float, tilt: int = 0, status: int = 0) -> bytes:
    return struct.pack(">HhBBH", distance_mm, round(temp_c * 10), tilt, status, 3600)


def frame(
    fcnt: int, payload: bytes, session: Session = BIN, fport: int = 1, *, confirmed: bool = False
) -> bytes:
    return build_uplink(session.dev_addr, fcnt, fport, payload, session.nwk_skey,
                        session.app_skey, confirmed=confirmed)  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def decoder(tmp_path: Path, clock: Clock) -> UplinkDecoder:
    return UplinkDecoder(
        "lora", Keyring([BIN]), FrameCounters(tmp_path / "fcnt.db"), load_device_types(),
        clock=clock,
    )  # fmt: skip


def values(items: list[Reading | Event]) -> dict[str, object]:
    return {i.point: i.value for i in items if isinstance(i, Reading)}


def events(items: list[Reading | Event]) -> list[Event]:
    return [i for i in items if isinstance(i, Event)]


def test_a_bin_report_becomes_readings_with_radio_health(decoder: UplinkDecoder) -> None:
    out = decoder.decode(frame(1, bin_payload(660, 21.5, tilt=3)), RADIO)
    got = values(out)
    assert got["distance"] == 660 and got["temperature"] == 21.5 and got["tilt"] == 3
    assert got["fill"] == pytest.approx(40.0)  # (1100 - 660) / 1100
    assert got["rssi"] == -97.0 and got["snr"] == 7.5 and got["spreading_factor"] == 9
    assert got["frequency"] == 868.1 and got["frames_lost"] == 0
    assert {r.device for r in out} == {"bin-0042"}  # type: ignore[union-attr]
    assert events(out) == []
    (health,) = decoder.health()
    assert health.state is DeviceState.UP and health.last_seen is not None


def test_full_and_fire_alarms_raise_once_and_clear(decoder: UplinkDecoder) -> None:
    full = events(decoder.decode(frame(1, bin_payload(50, 22.0)), RADIO))
    assert [(e.kind, e.active) for e in full] == [("bin.full", True)]
    assert events(decoder.decode(frame(2, bin_payload(40, 22.0)), RADIO)) == []  # still full
    fire = events(decoder.decode(frame(3, bin_payload(40, 64.0)), RADIO))
    assert [(e.kind, e.active, e.severity) for e in fire] == [("bin.fire", True, Severity.ALARM)]
    emptied = events(decoder.decode(frame(4, bin_payload(1000, 20.0)), RADIO))
    assert sorted((e.kind, e.active) for e in emptied) == [("bin.fire", False), ("bin.full", False)]


def test_replays_are_refused_also_after_a_restart(
    decoder: UplinkDecoder, tmp_path: Path, clock: Clock
) -> None:
    first = frame(7, bin_payload(500, 20.0))
    assert values(decoder.decode(first, RADIO))
    assert decoder.decode(first, RADIO) == []
    assert decoder.refused["replay"] == 1
    decoder.counters.close()
    restarted = UplinkDecoder(
        "lora", Keyring([BIN]), FrameCounters(tmp_path / "fcnt.db"), load_device_types(),
        clock=clock,
    )  # fmt: skip
    assert restarted.decode(first, RADIO) == []
    assert restarted.refused["replay"] == 1
    assert values(restarted.decode(frame(8, bin_payload(500, 20.0)), RADIO))


def test_bad_mic_unknown_device_and_garbage_are_counted(decoder: UplinkDecoder) -> None:
    good = bytearray(frame(1, bin_payload(500, 20.0)))
    good[-1] ^= 0x55
    assert decoder.decode(bytes(good), RADIO) == []
    stranger = Session("other", "waste-bin", 0x01020304, NWK, APP)
    assert decoder.decode(frame(1, bin_payload(1, 1), stranger), RADIO) == []
    assert decoder.decode(b"\x40\x01", RADIO) == []
    assert decoder.decode(bytes(23), RADIO) == []  # a join request, and no OTAA device here
    assert decoder.refused == {"bad-mic": 1, "unknown-device": 1, "too-short": 1, "join-request": 1}
    # the bad MIC did not move the counter: the genuine frame 1 is still accepted
    assert values(decoder.decode(frame(1, bin_payload(500, 20.0)), RADIO))


def test_a_device_first_heard_past_65535_frames_is_recognised(decoder: UplinkDecoder) -> None:
    late = frame(3 * 65536 + 17, bin_payload(500, 20.0))  # only the low 16 bits travel
    assert values(decoder.decode(late, RADIO))
    assert decoder.counters.last(BIN.dev_addr) == 3 * 65536 + 17
    # once a counter is known, no guessing: the next high half is taken only by roll-over
    assert decoder.decode(frame(5 * 65536 + 18, bin_payload(1, 1)), RADIO) == []
    assert decoder.refused["bad-mic"] == 1
    # beyond the bound, the first frame of a device is refused, not searched for ever
    other = Session("bin-0043", "waste-bin", 0x26011BDB, NWK, APP)
    decoder_far = UplinkDecoder("lora", Keyring([other]), decoder.counters, load_device_types())
    assert decoder_far.decode(frame(40 * 65536, bin_payload(1, 1), other), RADIO) == []
    assert decoder_far.refused["bad-mic"] == 1


def test_lost_frames_are_counted_from_counter_gaps(decoder: UplinkDecoder) -> None:
    decoder.decode(frame(10, bin_payload(500, 20.0)), RADIO)
    out = decoder.decode(frame(14, bin_payload(500, 20.0)), RADIO)
    assert values(out)["frames_lost"] == 3


def test_a_payload_the_codec_refuses_keeps_radio_readings(decoder: UplinkDecoder) -> None:
    out = decoder.decode(frame(1, b"\x01\x02"), RADIO)
    got = values(out)
    assert "rssi" in got and "distance" not in got
    assert decoder.refused["codec"] == 1
    (health,) = decoder.health()
    assert health.errors == {"codec": 1} and health.detail


def test_a_silent_sensor_raises_then_clears(decoder: UplinkDecoder, clock: Clock) -> None:
    decoder.decode(frame(1, bin_payload(500, 20.0)), RADIO)
    clock.now += 3 * 3600 - 1
    assert decoder.check_silence() == []
    clock.now += 2
    (silent,) = decoder.check_silence()
    assert silent.kind == "lorawan.silent" and silent.active is True  # type: ignore[union-attr]
    assert decoder.check_silence() == []  # once
    assert decoder.health()[0].state is DeviceState.DOWN
    back = events(decoder.decode(frame(2, bin_payload(500, 20.0)), RADIO))
    assert [(e.kind, e.active) for e in back] == [("lorawan.silent", False)]


def test_catalogue_lists_codec_and_radio_points(decoder: UplinkDecoder) -> None:
    info = decoder.catalogue()["bin-0042"]
    assert info.device_type == "waste-bin" and info.driver == "lora"
    assert {"fill", "temperature", "battery", "rssi", "frames_lost"} <= set(info.points)


def test_an_unknown_device_type_is_a_clear_error(tmp_path: Path) -> None:
    odd = Session("odd", "toaster", 1, NWK, APP)
    with pytest.raises(KeyError, match="toaster"):
        UplinkDecoder("lora", Keyring([odd]), FrameCounters(tmp_path / "f.db"), load_device_types())


def test_confirmed_uplinks_are_acked_in_rx1_and_retransmissions_not_counted_twice(
    decoder: UplinkDecoder,
) -> None:
    sent: list[tuple[bytes, int]] = []
    decoder.downlink = lambda _radio, f, delay: sent.append((f, delay)) is None  # type: ignore[func-returns-value]
    assert values(decoder.decode(frame(1, bin_payload(500, 20.0)), RADIO))
    assert sent == []  # unconfirmed: nothing to answer
    confirmed = frame(2, bin_payload(500, 20.0), confirmed=True)
    assert values(decoder.decode(confirmed, RADIO))
    ack, delay = sent[-1]
    down = parse_downlink(ack)  # what the bin reads
    assert delay == RECEIVE_DELAY1_US and down.ack and down.dev_addr == BIN.dev_addr
    assert down.fcnt16 == 0 and verify_mic(BIN.nwk_skey, down, 0)
    # the ACK was lost: the bin sends the same frame again; answered, not decoded again
    assert decoder.decode(confirmed, RADIO) == []
    assert parse_downlink(sent[-1][0]).fcnt16 == 1  # the network's counter moves on
    assert decoder.refused["retransmission"] == 1 and decoder.refused["replay"] == 0
    for _ in range(MAX_REACKS):  # a recorded frame replayed for ever buys no airtime
        decoder.decode(confirmed, RADIO)
    assert decoder.refused["retransmission"] == MAX_REACKS and decoder.refused["replay"] == 1
    assert decoder.acks_sent == 1 + MAX_REACKS
    # an older confirmed frame is a replay, not a retransmission
    assert decoder.decode(frame(1, bin_payload(1, 1), confirmed=True), RADIO) == []
    assert decoder.refused["replay"] == 2
    decoder.downlink = lambda _radio, _f, _delay: False  # no forwarder has pulled
    assert values(decoder.decode(frame(3, bin_payload(500, 20.0), confirmed=True), RADIO))
    assert decoder.refused["no-downlink"] == 1
