"""A GPS receiver's sentences → readings and fix events. Pure: time is passed in.

A receiver sends a burst of sentences per fix ("epoch"): GGA, RMC, VTG, GSA,
GLL, ZDA…
in an order of its own. Sentences are gathered until the epoch ends — a
sentence stamped with another UTC time, or a second GGA/RMC/VTG, or (from the
driver) a quiet gap after the burst — and the epoch then becomes one set of
readings. Sets are emitted at most once per `interval` seconds, measured in
the receiver's own UTC time when both epochs carry one (so a replayed capture
gives the same sets however fast it is fed), else on the gateway's monotonic
clock. A change of fix is emitted at once, whatever the interval.

Points (docs/serial.md): latitude, longitude (°), altitude (m), speed (km/h),
heading (° true), fix (GGA quality, 0 = no fix), fix_mode (GSA 1/2/3),
satellites, hdop, and clock_hint: the UTC time of a valid RMC (else of a ZDA in
an epoch with a fix) as unix seconds, for the agent's clock-fault handling. A
receiver set to send GLL instead of GGA/RMC still gives fix and position.
Without a fix there is no position, altitude, speed, heading or clock hint —
`fix` = 0 says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cityedge.drivers.nmea.sentence import Gga, Gll, Gsa, Rmc, Sentence, Vtg, Zda
from cityedge.sdk.model import Event, PointInfo, Reading, Severity, now_wall

FIX_LOST = "gps.fix_lost"
"""Event kind: raised (active) when the receiver has no fix, cleared when it has one again."""

POINTS: dict[str, PointInfo] = {
    p.name: p
    for p in (
        PointInfo("latitude", "float", "°", minimum=-90, maximum=90),
        PointInfo("longitude", "float", "°", minimum=-180, maximum=180),
        PointInfo("altitude", "float", "m"),
        PointInfo("speed", "float", "km/h", minimum=0),
        PointInfo("heading", "float", "°", minimum=0, maximum=360),
        PointInfo("fix", "int", minimum=0, maximum=9),
        PointInfo("fix_mode", "int", minimum=1, maximum=3),
        PointInfo("satellites", "int", minimum=0, maximum=99),
        PointInfo("hdop", "float", minimum=0),
        PointInfo("clock_hint", "float", "s"),
    )
}

_NEEDS_FIX = ("latitude", "longitude", "altitude", "speed", "heading", "clock_hint")
_DECIMALS = {"latitude": 7, "longitude": 7, "altitude": 2, "speed": 3, "heading": 2, "hdop": 2}
_DAY = 86400.0


@dataclass(slots=True)
class _Epoch:
    started: float  # monotonic seconds when its first sentence arrived
    time: float | None = None  # UTC seconds since midnight, from GGA/RMC
    gga: Gga | None = None
    rmc: Rmc | None = None
    vtg: Vtg | None = None
    gll: Gll | None = None
    zda: Zda | None = None
    gsa: list[Gsa] = field(default_factory=list)

    def has(self, sentence: Sentence) -> bool:
        match sentence:
            case Gga():
                return self.gga is not None
            case Rmc():
                return self.rmc is not None
            case Vtg():
                return self.vtg is not None
            case Gll():
                return self.gll is not None
            case Zda():
                return self.zda is not None
        return False  # several GSA per epoch is normal (one per constellation)

    def add(self, sentence: Sentence) -> None:
        match sentence:
            case Gga():
                self.gga = sentence
            case Rmc():
                self.rmc = sentence
            case Vtg():
                self.vtg = sentence
            case Gll():
                self.gll = sentence
            case Zda():
                self.zda = sentence
            case Gsa():
                self.gsa.append(sentence)
        stamp = getattr(sentence, "time", None)
        if self.time is None and stamp is not None:
            self.time = stamp

    @property
    def empty(self) -> bool:
        return not (self.gga or self.rmc or self.vtg or self.gll or self.zda or self.gsa)


class Receiver:
    """Turns one receiver's sentences into readings and `gps.fix_lost` events."""

    def __init__(self, device: str, driver: str, interval: float) -> None:
        self.device = device
        self.driver = driver
        self.interval = interval
        self.fix: int | None = None  # None until an epoch said
        self.latest: dict[str, Reading] = {}  # the last value of every point, for read()
        self.epochs = 0
        self._epoch: _Epoch | None = None
        self._emitted_time: float | None = None  # UTC time of day of the last set emitted
        self._emitted_at: float | None = None  # monotonic time of the last set emitted

    def feed(self, sentence: Sentence, now: float) -> list[Reading | Event]:
        """Take one sentence (at monotonic time `now`); returns what a closed epoch gave."""
        items: list[Reading | Event] = []
        epoch = self._epoch
        stamp = getattr(sentence, "time", None)
        if epoch is not None and (
            epoch.has(sentence) or (stamp is not None and epoch.time not in (None, stamp))
        ):
            items = self._close(epoch)
            epoch = None
        if epoch is None:
            epoch = self._epoch = _Epoch(started=now)
        epoch.add(sentence)
        return items

    def flush(self) -> list[Reading | Event]:
        """The burst is over (the line went quiet): close the open epoch now."""
        epoch, self._epoch = self._epoch, None
        return [] if epoch is None or epoch.empty else self._close(epoch)

    # --- an epoch → a set of readings -----------------------------------------------

    def _close(self, epoch: _Epoch) -> list[Reading | Event]:
        self._epoch = None
        self.epochs += 1
        values = _values(epoch, self.fix)
        ts = now_wall()
        items: list[Reading | Event] = []

        fix = values.get("fix")
        changed = False
        if isinstance(fix, int):
            first, had = self.fix is None, bool(self.fix)
            self.fix = fix
            changed = first or (fix > 0) != had
            # Starting without a fix is news (raise); starting with one is not.
            if changed and not (first and fix > 0):
                items.append(self._fix_event(fix > 0, values, ts))

        readings = [Reading(self.device, point, value, ts, POINTS[point].unit)
                    for point, value in values.items()]  # fmt: skip
        if self.fix is not None and self.fix == 0:
            for point in _NEEDS_FIX:
                self.latest.pop(point, None)
        self.latest.update((r.point, r) for r in readings)

        if readings and (changed or self._due(epoch)):
            self._emitted_time = epoch.time
            self._emitted_at = epoch.started
            items[:0] = readings
        return items

    def _due(self, epoch: _Epoch) -> bool:
        if self.interval <= 0 or self._emitted_at is None:
            return True
        if epoch.time is not None and self._emitted_time is not None:
            elapsed = (epoch.time - self._emitted_time) % _DAY  # across midnight too
        else:
            elapsed = epoch.started - self._emitted_at
        return elapsed >= self.interval - 1e-6

    def _fix_event(self, has_fix: bool, values: dict[str, float | int], ts: float) -> Event:
        data: dict[str, object] = {"driver": self.driver, "fix": values.get("fix")}
        if "satellites" in values:
            data["satellites"] = values["satellites"]
        return Event(FIX_LOST, source=self.device, ts=ts, severity=Severity.WARNING,
                     active=not has_fix, data=data)  # fmt: skip


def _values(epoch: _Epoch, previous_fix: int | None) -> dict[str, float | int]:
    """The readings one epoch supports, by the rules in the module docstring."""
    gga, rmc, vtg, gll = epoch.gga, epoch.rmc, epoch.vtg, epoch.gll
    out: dict[str, float | int] = {}
    if gga is not None:
        fix: int | None = gga.quality
    elif rmc is not None:
        fix = 1 if rmc.valid else 0
    elif gll is not None:  # a receiver set to GLL only: its status is all we know
        fix = 1 if gll.valid else 0
    elif epoch.gsa and max(g.mode for g in epoch.gsa) == 1:
        fix = 0
    else:
        fix = previous_fix
    if fix is not None:
        out["fix"] = fix
    if epoch.gsa:
        out["fix_mode"] = max(g.mode for g in epoch.gsa)
    if gga is not None and gga.satellites is not None:
        out["satellites"] = gga.satellites
    hdop = (
        gga.hdop
        if gga is not None
        else next((g.hdop for g in epoch.gsa if g.hdop is not None), None)
    )
    if hdop is not None:
        out["hdop"] = hdop

    if fix:
        position = _position(gga, rmc, gll)
        if position is not None:
            out["latitude"], out["longitude"] = position
        if gga is not None and gga.altitude is not None:
            out["altitude"] = gga.altitude
        rmc_ok = rmc is not None and rmc.valid
        vtg_ok = vtg is not None and vtg.valid
        speed = vtg.speed_kmh if vtg is not None and vtg_ok else None
        if speed is None and rmc is not None and rmc_ok:
            speed = rmc.speed_kmh
        if speed is not None:
            out["speed"] = speed
        heading = vtg.course if vtg is not None and vtg_ok else None
        if heading is None and rmc is not None and rmc_ok:
            heading = rmc.course
        if heading is not None:
            out["heading"] = heading
        if rmc is not None and rmc_ok and rmc.utc is not None:
            out["clock_hint"] = rmc.utc
        elif epoch.zda is not None and epoch.zda.utc is not None:
            out["clock_hint"] = epoch.zda.utc  # with a fix: the receiver's time is GNSS time
    return {k: round(v, _DECIMALS[k]) if k in _DECIMALS else v for k, v in out.items()}


def _position(gga: Gga | None, rmc: Rmc | None, gll: Gll | None) -> tuple[float, float] | None:
    """GGA's position when it has one, else a valid RMC's, else a valid GLL's."""
    if gga is not None and gga.latitude is not None and gga.longitude is not None:
        return gga.latitude, gga.longitude
    for other in (rmc, gll):
        if other is None or not other.valid:
            continue
        if other.latitude is not None and other.longitude is not None:
            return other.latitude, other.longitude
    return None
