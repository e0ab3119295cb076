"""NMEA 0183 sentences → typed values. Pure: no I/O, no clock.

`parse_sentence(line)` checks the frame (`$`, printable ASCII, length, `*hh`
checksum) and decodes the sentences a vehicle gateway needs — GGA (fix data),
RMC (position, velocity, time), VTG (course and speed), GSA (fix mode,
dilution), GLL (position and time: receivers set to send it instead of GGA/RMC),
ZDA (UTC date and time, local zone) — from any talker (GP, GN, GL, GA, GB, BD,
GQ…). Other well-formed sentences (GSV, TXT, proprietary `$P…`) return None:
valid, not needed.
Anything else raises `SentenceError` with a short `reason` for the health
counters and a detail naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce

MAX_SENTENCE = 120
"""The standard says 82 characters; some receivers send longer (high-precision
fields). Past this, it is not a sentence but noise that happened to start with $."""

KNOT_KMH = 1.852

_ADDRESS = re.compile(rb"^([A-Z]{2})([A-Z]{3})$")
_PROPRIETARY = re.compile(rb"^P[A-Z0-9]{1,8}$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


class SentenceError(ValueError):
    """A line that is not a usable sentence.

    `reason` (a health counter): `checksum` (wrong or unreadable), `truncated`
    (no checksum: cut short), `unframed` (no `$`, or noise before it),
    `malformed` (a frame with bad fields, or not text at all).
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class Gga:
    """Fix data: when, where, how good."""

    talker: str
    time: float | None  # seconds since UTC midnight
    latitude: float | None  # decimal degrees, north positive
    longitude: float | None  # decimal degrees, east positive
    quality: (
        int  # 0 invalid, 1 GPS, 2 DGPS, 3 PPS, 4 RTK, 5 float RTK, 6 estimated, 7 manual, 8 sim
    )
    satellites: int | None
    hdop: float | None
    altitude: float | None  # metres above mean sea level


@dataclass(frozen=True, slots=True)
class Rmc:
    """Recommended minimum: position, velocity and the UTC date and time."""

    talker: str
    time: float | None
    valid: bool  # status A (active) vs V (void)
    latitude: float | None
    longitude: float | None
    speed_knots: float | None
    course: float | None  # degrees true
    utc: float | None  # unix seconds, when both date and time are present

    @property
    def speed_kmh(self) -> float | None:
        return None if self.speed_knots is None else self.speed_knots * KNOT_KMH


@dataclass(frozen=True, slots=True)
class Vtg:
    """Course and speed over ground."""

    talker: str
    course: float | None  # degrees true
    speed_kmh: float | None
    valid: bool  # False when the NMEA 2.3 mode indicator says N (not valid)


@dataclass(frozen=True, slots=True)
class Gsa:
    """Fix mode and dilution of precision (one per constellation on multi-GNSS receivers)."""

    talker: str
    mode: int  # 1 no fix, 2 2D, 3 3D
    pdop: float | None
    hdop: float | None
    vdop: float | None


@dataclass(frozen=True, slots=True)
class Gll:
    """Geographic position, latitude/longitude, with its UTC time of day."""

    talker: str
    latitude: float | None
    longitude: float | None
    time: float | None
    valid: bool  # status A, and the NMEA 2.3 mode indicator not N


@dataclass(frozen=True, slots=True)
class Zda:
    """UTC date and time (and the local zone the receiver was set to)."""

    talker: str
    time: float | None  # seconds since UTC midnight
    utc: float | None  # unix seconds, when the date is there too
    zone_minutes: int | None  # local zone offset from UTC, minutes (informative)


Sentence = Gga | Rmc | Vtg | Gsa | Gll | Zda


def checksum(body: bytes) -> int:
    """XOR of the bytes between `$` and `*`."""
    return reduce(lambda acc, byte: acc ^ byte, body, 0)


def frame(body: str) -> bytes:
    """`$<body>*hh` — how a receiver (or a simulator) sends a sentence."""
    data = body.encode("ascii")
    return b"$" + data + b"*" + f"{checksum(data):02X}".encode()


def parse_sentence(line: bytes) -> Sentence | None:
    """One line (without CR/LF) → a sentence, None if valid but not needed.

    Raises `SentenceError` for anything that is not a valid sentence.
    """
    if len(line) > MAX_SENTENCE:
        raise SentenceError("malformed", f"{len(line)} bytes, longer than any sentence")
    start = line.find(b"$")
    if start < 0:
        raise SentenceError("unframed", "no '$': not a sentence")
    if start > 0:  # noise before the frame (line noise, a half line after reconnect)
        raise SentenceError("unframed", f"{start} byte(s) of noise before '$'")
    if any(b < 0x20 or b > 0x7E for b in line):
        raise SentenceError("malformed", "non-printable bytes in the sentence")
    star = line.rfind(b"*")
    if star < 0:
        raise SentenceError("truncated", "no '*hh' checksum: sentence cut short")
    body, given = line[1:star], line[star + 1 :]
    if len(given) != 2 or not all(chr(c) in "0123456789ABCDEFabcdef" for c in given):
        raise SentenceError("checksum", f"checksum field {given.decode()!r} is not two hex digits")
    computed = checksum(body)
    if computed != int(given, 16):
        raise SentenceError("checksum", f"checksum {given.decode()} given, {computed:02X} computed")
    fields = body.split(b",")
    address = fields[0]
    if _PROPRIETARY.match(address):
        return None
    match = _ADDRESS.match(address)
    if match is None:
        raise SentenceError("malformed", f"address field {address.decode()!r} is not talker+type")
    talker, kind = match.group(1).decode(), match.group(2).decode()
    values = [f.decode("ascii") for f in fields[1:]]
    parser = _PARSERS.get(kind)
    if parser is None:
        return None
    return parser(talker, _Fields(kind, values))


# --- fields -------------------------------------------------------------------------


class _Fields:
    """The comma-separated fields of one sentence, read with errors naming the field."""

    def __init__(self, kind: str, values: list[str]) -> None:
        self.kind = kind
        self.values = values

    def need(self, count: int) -> None:
        if len(self.values) < count:
            raise SentenceError(
                "malformed", f"{self.kind}: {len(self.values)} fields, at least {count} expected"
            )

    def text(self, i: int) -> str:
        return self.values[i] if i < len(self.values) else ""

    def bad(self, i: int, what: str, expected: str) -> SentenceError:
        return SentenceError(
            "malformed", f"{self.kind} field {i + 1} ({what}): {self.text(i)!r} is not {expected}"
        )

    def number(self, i: int, what: str, low: float, high: float) -> float | None:
        text = self.text(i)
        if not text:
            return None
        if not _NUMBER.match(text):
            raise self.bad(i, what, "a number")
        value = float(text)
        if not (low <= value <= high and math.isfinite(value)):
            raise self.bad(i, what, f"within {low:g}..{high:g}")
        return value

    def integer(self, i: int, what: str, low: int, high: int) -> int | None:
        text = self.text(i)
        if not text:
            return None
        if not text.isdigit():
            raise self.bad(i, what, "an integer")
        value = int(text)
        if not low <= value <= high:
            raise self.bad(i, what, f"within {low}..{high}")
        return value

    def choice(self, i: int, what: str, allowed: str) -> str:
        text = self.text(i)
        if text and (len(text) != 1 or text not in allowed):
            raise self.bad(i, what, f"one of {', '.join(allowed)}")
        return text

    def time(self, i: int) -> float | None:
        """hhmmss[.sss] → seconds since midnight."""
        text = self.text(i)
        if not text:
            return None
        head, _, fraction = text.partition(".")
        if len(head) != 6 or not head.isdigit() or not _digits(fraction):
            raise self.bad(i, "UTC time", "hhmmss[.ss]")
        hours, minutes, seconds = int(head[:2]), int(head[2:4]), int(head[4:])
        if hours > 23 or minutes > 59 or seconds > 60:  # 60: a leap second
            raise self.bad(i, "UTC time", "a time of day")
        return hours * 3600 + minutes * 60 + seconds + float(f"0.{fraction or 0}")

    def angle(self, i: int, what: str, degree_digits: int, hemispheres: str) -> float | None:
        """(d)ddmm.mmmm plus a hemisphere field → signed decimal degrees."""
        text, hemi = self.text(i), self.text(i + 1)
        if not text:  # no position (some receivers still send the hemisphere letter)
            return None
        head, _, fraction = text.partition(".")
        if len(head) != degree_digits + 2 or not head.isdigit() or not _digits(fraction):
            raise self.bad(i, what, f"{'d' * degree_digits}mm.mmmm")
        degrees = int(head[:degree_digits])
        minutes = float(f"{head[degree_digits:]}.{fraction or 0}")
        limit = 90 if degree_digits == 2 else 180
        value = degrees + minutes / 60
        if minutes >= 60 or value > limit:
            raise self.bad(i, what, f"an angle within ±{limit}°")
        if len(hemi) != 1 or hemi not in hemispheres:
            raise self.bad(i + 1, f"{what} hemisphere", f"{hemispheres[0]} or {hemispheres[1]}")
        return -value if hemi == hemispheres[1] else value


def _digits(text: str) -> bool:
    """Empty, or only digits (the fraction after a decimal point)."""
    return not text or text.isdigit()


# --- sentences ----------------------------------------------------------------------


def _gga(talker: str, f: _Fields) -> Gga:
    f.need(9)
    quality = f.integer(5, "fix quality", 0, 9)
    return Gga(
        talker=talker,
        time=f.time(0),
        latitude=f.angle(1, "latitude", 2, "NS"),
        longitude=f.angle(3, "longitude", 3, "EW"),
        quality=quality or 0,  # an empty quality field means no fix
        satellites=f.integer(6, "satellites", 0, 99),
        hdop=f.number(7, "HDOP", 0, 100),
        altitude=f.number(8, "altitude", -10000, 100000),
    )


def _rmc(talker: str, f: _Fields) -> Rmc:
    f.need(9)
    time = f.time(0)
    status = f.choice(1, "status", "AV")
    date = f.text(8)
    utc = None
    if date:
        if len(date) != 6 or not date.isdigit():
            raise f.bad(8, "date", "ddmmyy")
        day, month, year = int(date[:2]), int(date[2:4]), int(date[4:])
        # NMEA sends two digits: 80-99 are the 1900s (GPS began in 1980), the rest 2000s
        year += 1900 if year >= 80 else 2000
        try:
            midnight = datetime(year, month, day, tzinfo=UTC).timestamp()
        except ValueError:
            raise f.bad(8, "date", "a calendar date") from None
        utc = None if time is None else midnight + time
    mode = f.choice(11, "mode", "ADEFMNPRS") if len(f.values) > 11 else ""
    return Rmc(
        talker=talker,
        time=time,
        valid=status == "A" and mode != "N",
        latitude=f.angle(2, "latitude", 2, "NS"),
        longitude=f.angle(4, "longitude", 3, "EW"),
        speed_knots=f.number(6, "speed", 0, 100000),
        course=f.number(7, "course", 0, 360),
        utc=utc,
    )


def _vtg(talker: str, f: _Fields) -> Vtg:
    f.need(8)
    knots = f.number(4, "speed (knots)", 0, 100000)
    kmh = f.number(6, "speed (km/h)", 0, 200000)
    mode = f.choice(8, "mode", "ADEFMNPRS") if len(f.values) > 8 else ""
    if kmh is None and knots is not None:
        kmh = knots * KNOT_KMH
    return Vtg(
        talker=talker, course=f.number(0, "course", 0, 360), speed_kmh=kmh, valid=mode != "N"
    )


def _gsa(talker: str, f: _Fields) -> Gsa:
    f.need(17)
    mode = f.integer(1, "fix mode", 1, 3)
    return Gsa(
        talker=talker,
        mode=mode or 1,
        pdop=f.number(14, "PDOP", 0, 100),
        hdop=f.number(15, "HDOP", 0, 100),
        vdop=f.number(16, "VDOP", 0, 100),
    )


def _gll(talker: str, f: _Fields) -> Gll:
    f.need(6)
    status = f.choice(5, "status", "AV")
    mode = f.choice(6, "mode", "ADEFMNPRS") if len(f.values) > 6 else ""
    return Gll(
        talker=talker,
        latitude=f.angle(0, "latitude", 2, "NS"),
        longitude=f.angle(2, "longitude", 3, "EW"),
        time=f.time(4),
        valid=status == "A" and mode != "N",
    )


def _zda(talker: str, f: _Fields) -> Zda:
    f.need(4)
    time = f.time(0)
    day = f.integer(1, "day", 1, 31)
    month = f.integer(2, "month", 1, 12)
    year = f.integer(3, "year", 1980, 2999)  # four digits here, unlike RMC
    utc = None
    if day is not None and month is not None and year is not None:
        try:
            midnight = datetime(year, month, day, tzinfo=UTC).timestamp()
        except ValueError:
            raise f.bad(1, "day", "a day of that month") from None
        utc = None if time is None else midnight + time
    hours = f.number(4, "zone hours", -13, 13) if len(f.values) > 4 else None
    minutes = f.integer(5, "zone minutes", 0, 59) if len(f.values) > 5 else None
    zone = None
    if hours is not None:
        sign = -1 if f.text(4).startswith("-") else 1
        zone = int(hours) * 60 + sign * (minutes or 0)
    return Zda(talker=talker, time=time, utc=utc, zone_minutes=zone)


_PARSERS: dict[str, Callable[[str, _Fields], Sentence]] = {
    "GGA": _gga,
    "RMC": _rmc,
    "VTG": _vtg,
    "GSA": _gsa,
    "GLL": _gll,
    "ZDA": _zda,
}
