"""From a heard radio frame to verified readings: the LoRaWAN driver's decision path.

For each frame (already collapsed across antennas and forwarders), in order:
parse → find the session by DevAddr → rebuild the 32-bit counter and refuse
replays → verify the MIC → commit the counter → MAC commands (FOpts or FPort 0;
LinkCheckReq and DeviceTimeReq answered in RX1, `maccommands`) → decrypt →
decode with the device type's codec → readings, radio health, alarms. A frame refused at any
step is counted by reason and never becomes a reading. Pure of I/O except the
counter store, so the tests and the benchmark drive it directly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from cityedge.drivers.lorawan.codec import CodecError, decode
from cityedge.drivers.lorawan.devicetype import DeviceType, breached
from cityedge.drivers.lorawan.fcnt import FrameCounters, Verdict
from cityedge.drivers.lorawan.frames import (
    FrameError,
    MType,
    Uplink,
    build_downlink,
    crypt_frm_payload,
    mtype_of,
    parse_uplink,
    verify_mic,
)
from cityedge.drivers.lorawan.joins import RX1_DELAY, JoinRefused, JoinServer
from cityedge.drivers.lorawan.keyring import Keyring, OtaaDevice, Session
from cityedge.drivers.lorawan.maccommands import (
    DEVICE_TIME,
    LINK_CHECK,
    device_time_ans,
    link_check_ans,
    parse_mac_commands,
)
from cityedge.sdk.logs import Throttled
from cityedge.sdk.model import (
    DeviceHealth,
    DeviceInfo,
    DeviceState,
    Event,
    PointInfo,
    Reading,
    Severity,
    Value,
)

log = structlog.get_logger(__name__)

# Readings every LoRaWAN device gets besides its codec's points.
RADIO_POINTS: dict[str, PointInfo] = {
    "rssi": PointInfo("rssi", "float", "dBm"),
    "snr": PointInfo("snr", "float", "dB"),
    "spreading_factor": PointInfo("spreading_factor", "int"),
    "frequency": PointInfo("frequency", "float", "MHz"),
    "frames_lost": PointInfo("frames_lost", "int"),
}


@dataclass(frozen=True, slots=True)
class Radio:
    """How the best copy of a frame was heard."""

    rssi: float
    snr: float
    spreading_factor: int | None
    frequency: float
    forwarders: tuple[str, ...]  # gateway EUIs that heard it
    copies: int = 1
    # for an answer in RX1 (join accepts): which forwarder heard it best, when by
    # its concentrator's microsecond counter, and at which bandwidth
    via: str = ""
    tmst: int = 0
    bandwidth: int | None = None


_SEVERITY = {"info": Severity.INFO, "warning": Severity.WARNING, "critical": Severity.ALARM}
FIRST_CONTACT_HIGH_HALVES = 16  # a device first heard within its first ~1.1 million frames
RECEIVE_DELAY1_US = RX1_DELAY * 1_000_000  # RX1 of a data uplink: the ABP default too
JOIN_ACCEPT_DELAY1_US = 5_000_000  # RX1 of a join request
MAX_REACKS = 8  # a confirmed uplink is sent at most NbTrans (≤ 15) times; ACK a few again


def point_table(device_type: DeviceType) -> dict[str, PointInfo]:
    return {p.name: PointInfo(p.name, p.kind, p.unit) for p in device_type.points}


@dataclass
class _Device:
    session: Session
    codec: DeviceType
    health: DeviceHealth
    frames: int = 0
    lost: int = 0
    active_alarms: set[str] = field(default_factory=set)
    silent: bool = False
    reacks: int = 0  # ACKs sent again for the last confirmed uplink (retransmissions)


class UplinkDecoder:
    def __init__(
        self,
        driver: str,
        keyring: Keyring,
        counters: FrameCounters,
        codecs: Mapping[str, DeviceType],
        *,
        silent_intervals: float = 3.0,
        clock: Callable[[], float] = time.time,
        joins: JoinServer | None = None,
    ) -> None:
        self.driver = driver
        self.counters = counters
        self.clock = clock
        self.silent_intervals = silent_intervals
        self.joins = joins
        # Sends a frame in RX1 of the one heard as `radio`, `delay` µs after it;
        # False when no forwarder can take it. Set by the driver once it listens.
        self.downlink: Callable[[Radio, bytes, int], bool] | None = None
        self.acks_sent = 0
        self.mac_answers = 0  # downlinks that carried MAC command answers
        self.mac_commands: Counter[str] = Counter()  # by name: link-check-req, dev-status-ans…
        self.refused: Counter[str] = Counter()  # by reason: bad-mic, replay, unknown-device…
        # anyone in radio range can send frames: each reason logged once, then counted
        self._refused_log = Throttled(log, "lorawan.frame.refused", level="info")
        self.decoded = 0
        self.joined = 0
        self._started = clock()
        self._codecs = codecs
        self._devices: dict[int, _Device] = {}
        self._waiting: dict[str, tuple[OtaaDevice, DeviceHealth]] = {}  # OTAA, never joined
        for session in keyring.values():
            self._open(session, DeviceHealth(session.name, driver))
        for otaa in keyring.otaa.values():
            self._codec(otaa.name, otaa.device_type)
            health = DeviceHealth(otaa.name, driver, detail="waiting for its first join")
            self._waiting[otaa.name] = (otaa, health)
        for session in joins.sessions() if joins else []:
            _, health = self._waiting.pop(session.name)
            self._open(session, health)

    def _open(self, session: Session, health: DeviceHealth) -> None:
        """A device's session is in use: decode what comes from its address."""
        health.detail = ""
        self._devices[session.dev_addr] = _Device(
            session, self._codec(session.name, session.device_type), health
        )

    def _codec(self, name: str, device_type: str) -> DeviceType:
        codec = self._codecs.get(device_type)
        if codec is None:
            raise KeyError(
                f"device {name}: no device type {device_type!r} "
                f"(known: {', '.join(sorted(self._codecs)) or 'none'})"
            )
        return codec

    # --- what the driver shows --------------------------------------------------------

    def catalogue(self) -> dict[str, DeviceInfo]:
        devices = [(d.session.name, d.codec) for d in self._devices.values()]
        devices += [(o.name, self._codecs[o.device_type]) for o, _ in self._waiting.values()]
        return {
            name: DeviceInfo(name, codec.name, self.driver, {**point_table(codec), **RADIO_POINTS})
            for name, codec in devices
        }

    def health(self) -> list[DeviceHealth]:
        return [d.health for d in self._devices.values()] + [h for _, h in self._waiting.values()]

    def device(self, name: str) -> _Device | None:
        return next((d for d in self._devices.values() if d.session.name == name), None)

    # --- one frame ---------------------------------------------------------------------

    def _refuse(
        self, reason: str, detail: str, device: _Device | None = None
    ) -> list[Reading | Event]:
        self.refused[reason] += 1
        if device is not None:
            device.health.count_error(reason)
        self._refused_log(reason, driver=self.driver, detail=detail)
        return []

    def flush_logs(self) -> None:
        """Log the count of refusals not logged one by one (called periodically)."""
        self._refused_log.flush()

    def decode(self, payload: bytes, radio: Radio) -> list[Reading | Event]:
        now = self.clock()
        try:
            if payload and mtype_of(payload) is MType.JOIN_REQUEST:
                return self._join(payload, radio, now)
            up = parse_uplink(payload)
        except FrameError as exc:
            return self._refuse(exc.reason, exc.detail)
        device = self._devices.get(up.dev_addr)
        if device is None:
            # Another operator's device, most likely: counted, never logged by address
            # (docs/privacy.md).
            return self._refuse("unknown-device", "a DevAddr with no session key here")
        name = device.session.name
        verdict = self.counters.check(up.dev_addr, up.fcnt16)
        if verdict.replay:
            if self._retransmission(device, up, verdict.fcnt32, radio):
                return []  # answered again; its readings went up the first time
            return self._refuse("replay", f"{name}: FCnt {verdict.fcnt32} <= last accepted", device)
        if not verify_mic(device.session.nwk_skey, up, verdict.fcnt32):
            fcnt32 = self._first_contact(device, up)
            if fcnt32 is None:
                return self._refuse(
                    "bad-mic", f"{name}: MIC does not verify (FCnt {verdict.fcnt32})", device
                )
            verdict = Verdict(fcnt32, replay=False, lost=0)
        self.counters.accept(up.dev_addr, verdict.fcnt32)
        device.reacks = 0
        answers = self._mac_commands(device, up, verdict.fcnt32, radio, now)
        if up.confirmed or answers:
            self._ack(device, up.dev_addr, radio, ack=up.confirmed, fopts=answers)

        device.frames += 1
        device.lost += verdict.lost
        health = device.health
        health.requests += 1
        health.last_seen = now
        if health.state is not DeviceState.UP:
            health.state, health.since = DeviceState.UP, now
        out: list[Reading | Event] = [
            Reading(name, "rssi", float(radio.rssi), now, "dBm"),
            Reading(name, "snr", float(radio.snr), now, "dB"),
            Reading(name, "frequency", float(radio.frequency), now, "MHz"),
            Reading(name, "frames_lost", device.lost, now),
        ]
        if radio.spreading_factor is not None:
            out.append(Reading(name, "spreading_factor", radio.spreading_factor, now))
        if device.silent:
            device.silent = False
            out.append(Event("lorawan.silent", name, now, Severity.WARNING, active=False))
        if up.fport is None or up.fport == 0:
            return out  # MAC commands only: the radio readings are all there is
        plain = crypt_frm_payload(
            device.session.app_skey, up.dev_addr, verdict.fcnt32, up.frm_payload
        )
        try:
            points = decode(device.codec, up.fport, plain)
        except CodecError as exc:
            self._refuse("codec", f"{name}: {exc}", device)
            health.detail = str(exc)
            return out
        self.decoded += 1
        for point in points:
            out.append(Reading(name, point.name, point.value, now, point.unit))
            out += self._alarms(device, point.name, point.value, now)
        return out

    def _ack(self, device: _Device, dev_addr: int, radio: Radio, *, ack: bool = True,
             fopts: bytes = b"") -> None:  # fmt: skip
        """A confirmed uplink wants an ACK in RX1, or the device sends it again; MAC
        command answers ride in the same downlink's FOpts."""
        if self.downlink is None:
            return
        session = device.session
        frame = build_downlink(dev_addr, self.counters.next_down(dev_addr), session.nwk_skey,
                               session.app_skey, ack=ack, fopts=fopts)  # fmt: skip
        if self.downlink(radio, frame, RECEIVE_DELAY1_US):
            self.acks_sent += ack
            self.mac_answers += len(fopts) > 0
        else:
            self.refused["no-downlink"] += 1

    def _mac_commands(
        self, device: _Device, up: Uplink, fcnt32: int, radio: Radio, now: float
    ) -> bytes:
        """Parse the frame's MAC commands (FOpts, or FPort 0 under the NwkSKey), count
        them, and return the answers to send: LinkCheckAns, DeviceTimeAns."""
        if up.fopts:
            raw = up.fopts
        elif up.fport == 0:
            raw = crypt_frm_payload(device.session.nwk_skey, up.dev_addr, fcnt32, up.frm_payload)
        else:
            return b""
        parsed = parse_mac_commands(raw)
        if parsed.unknown is not None or parsed.truncated is not None:
            what = (f"command id {parsed.unknown:#04x}" if parsed.unknown is not None
                    else f"{parsed.truncated} cut short")  # fmt: skip
            self._refuse("mac-command", f"{device.session.name}: {what}", device)
        answers = b""
        for command in parsed.commands:
            self.mac_commands[command.name] += 1
            if command.cid == LINK_CHECK:
                answers += link_check_ans(radio.snr, radio.spreading_factor, len(radio.forwarders))
            elif command.cid == DEVICE_TIME:
                answers += device_time_ans(now)
        return answers[:15]  # FOpts' limit; both answers together take 9 bytes

    def _retransmission(self, device: _Device, up: Uplink, fcnt32: int, radio: Radio) -> bool:
        """The last confirmed uplink again, authentic: our ACK was lost on the air.
        ACK it again (a bounded number of times: a recorded frame must not buy airtime)
        without handing its readings on twice."""
        if not up.confirmed or fcnt32 != self.counters.last(up.dev_addr):
            return False
        if device.reacks >= MAX_REACKS or not verify_mic(device.session.nwk_skey, up, fcnt32):
            return False
        device.reacks += 1
        self.refused["retransmission"] += 1
        self._ack(device, up.dev_addr, radio)
        return True

    def _first_contact(self, device: _Device, up: Uplink) -> int | None:
        """A device first heard after its counter passed 65,535 (added to the key file
        late, or the counter file was lost): only 16 bits travel, so try the next
        high halves. Bounded (FIRST_CONTACT_HIGH_HALVES CMACs, only while the gateway
        has no counter for it), and any hit is as authentic as a MIC can make it."""
        if self.counters.last(up.dev_addr) is not None:
            return None
        for high in range(1, FIRST_CONTACT_HIGH_HALVES + 1):
            fcnt32 = (high << 16) | up.fcnt16
            if verify_mic(device.session.nwk_skey, up, fcnt32):
                return fcnt32
        return None

    def _join(self, payload: bytes, radio: Radio, now: float) -> list[Reading | Event]:
        if self.joins is None:
            return self._refuse("join-request", "no OTAA device in the key file")
        try:
            joined = self.joins.join(payload)
        except FrameError as exc:
            return self._refuse(exc.reason, exc.detail)
        except JoinRefused as exc:
            health = self._health_of(exc.device)
            if health is not None:
                health.count_error(exc.reason)
            return self._refuse(exc.reason, exc.detail)
        session = joined.session
        old = self._devices.pop(joined.previous, None) if joined.previous is not None else None
        if old is not None:
            health = old.health
        else:
            _, health = self._waiting.pop(session.name)
        for addr in (session.dev_addr, joined.previous):
            if addr is not None:
                self.counters.forget(addr)  # a new session counts from 0
        self._open(session, health)
        self.joined += 1
        sent = self.downlink is not None and self.downlink(
            radio, joined.accept, JOIN_ACCEPT_DELAY1_US
        )
        log.info("lorawan.joined", driver=self.driver, device=session.name,
                 dev_addr=f"{session.dev_addr:08X}", accept_sent=sent)  # fmt: skip
        if not sent:
            # The session is kept: the device will ask again, and its next request opens
            # a newer one. Nothing else can be done without a path to it.
            self.refused["no-downlink"] += 1
        return [
            Event("lorawan.joined", session.name, now, Severity.INFO,
                  data={"dev_addr": f"{session.dev_addr:08X}", "via": radio.via,
                        "accept_sent": sent})
        ]  # fmt: skip

    def _health_of(self, name: str | None) -> DeviceHealth | None:
        if name is None:
            return None
        device = self.device(name)
        if device is not None:
            return device.health
        waiting = self._waiting.get(name)
        return waiting[1] if waiting else None

    def _alarms(
        self, device: _Device, point: str, value: Value, now: float
    ) -> list[Reading | Event]:
        events: list[Reading | Event] = []
        active = device.active_alarms
        for alarm in device.codec.alarms:
            if alarm.point != point:
                continue
            kind, severity = alarm.event, _SEVERITY.get(alarm.severity, Severity.WARNING)
            is_breached = breached(alarm, value)
            if is_breached and kind not in active:
                active.add(kind)
                events.append(Event(kind, device.session.name, now, severity, active=True,
                                    data={"point": point, "value": value}))  # fmt: skip
            elif not is_breached and kind in active:
                active.discard(kind)
                events.append(Event(kind, device.session.name, now, severity, active=False,
                                    data={"point": point, "value": value}))  # fmt: skip
        return events

    # --- silence --------------------------------------------------------------------------

    def check_silence(self) -> list[Reading | Event]:
        """A device not heard for `silent_intervals` times its interval: alarm once."""
        now = self.clock()
        events: list[Reading | Event] = []
        for device in self._devices.values():
            limit = device.codec.interval_s * self.silent_intervals
            last = device.health.last_seen or self._started
            if not device.silent and now - last > limit:
                device.silent = True
                device.health.state, device.health.since = DeviceState.DOWN, now
                events.append(
                    Event("lorawan.silent", device.session.name, now, Severity.WARNING,
                          active=True, data={"silent_for": round(now - last, 1),
                                             "interval": device.codec.interval_s})
                )  # fmt: skip
        return events
