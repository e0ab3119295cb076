"""The NMEA sentence parser: published examples, talkers, every way a line can be bad,
and hypothesis fuzzing (random bytes, mangled sentences, encode/decode round trips)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cityedge.drivers.nmea.sentence import (
    Gga,
    Gll,
    Gsa,
    Rmc,
    SentenceError,
    Vtg,
    Zda,
    checksum,
    frame,
    parse_sentence,
)


def utc(
    year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0
) -> float:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC).timestamp()


def test_gga_of_the_classic_example() -> None:
    # Dale DePriest's NMEA reference, gpsd docs: 12:35:19 UTC, 48°07.038'N 11°31.000'E
    gga = parse_sentence(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47")
    assert gga == Gga(
        talker="GP",
        time=12 * 3600 + 35 * 60 + 19,
        latitude=pytest.approx(48 + 7.038 / 60),  # type: ignore[arg-type]
        longitude=pytest.approx(11 + 31 / 60),  # type: ignore[arg-type]
        quality=1,
        satellites=8,
        hdop=0.9,
        altitude=545.4,
    )


def test_rmc_gives_position_speed_course_and_utc() -> None:
    rmc = parse_sentence(b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A")
    assert isinstance(rmc, Rmc)
    assert rmc.valid and rmc.course == 84.4
    assert rmc.speed_knots == 22.4 and rmc.speed_kmh == pytest.approx(41.4848)
    assert rmc.utc == utc(1994, 3, 23, 12, 35, 19)


def test_southern_and_western_hemispheres_are_negative_and_fractions_of_seconds_kept() -> None:
    # SiRF NMEA reference manual: 16:12:29.487 on 12 May 1998, 37°23.2475'N 121°58.3416'W
    rmc = parse_sentence(b"$GPRMC,161229.487,A,3723.2475,N,12158.3416,W,0.13,309.62,120598,,*10")
    assert isinstance(rmc, Rmc)
    assert rmc.latitude == pytest.approx(37 + 23.2475 / 60)
    assert rmc.longitude == pytest.approx(-(121 + 58.3416 / 60))
    assert rmc.utc == pytest.approx(utc(1998, 5, 12, 16, 12, 29, micro=487_000))
    south = parse_sentence(frame("GPGGA,000000,3351.000,S,15112.000,W,1,05,1.1,10.0,M,,,,"))
    assert isinstance(south, Gga)
    assert south.latitude == pytest.approx(-(33 + 51 / 60))


def test_vtg_old_and_new_forms() -> None:
    old = parse_sentence(b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48")
    assert old == Vtg(talker="GP", course=54.7, speed_kmh=10.2, valid=True)
    # u-blox, NMEA 2.3 with the mode indicator
    new = parse_sentence(b"$GPVTG,77.52,T,,M,0.004,N,0.008,K,A*06")
    assert new == Vtg(talker="GP", course=77.52, speed_kmh=0.008, valid=True)
    void = parse_sentence(b"$GPVTG,,,,,,,,,N*30")
    assert void == Vtg(talker="GP", course=None, speed_kmh=None, valid=False)
    knots_only = parse_sentence(frame("GPVTG,10.0,T,,M,10.0,N,,K"))
    assert isinstance(knots_only, Vtg) and knots_only.speed_kmh == pytest.approx(18.52)


def test_gsa_fix_mode_and_dilution() -> None:
    gsa = parse_sentence(b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39")
    assert gsa == Gsa(talker="GP", mode=3, pdop=2.5, hdop=1.3, vdop=2.1)
    none = parse_sentence(b"$GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99*30")
    assert isinstance(none, Gsa) and none.mode == 1


def test_no_fix_sentences_of_a_cold_receiver() -> None:
    # u-blox before its first fix
    gga = parse_sentence(b"$GPGGA,,,,,,0,00,99.99,,,,,,*48")
    assert isinstance(gga, Gga)
    assert (gga.time, gga.latitude, gga.quality, gga.satellites) == (None, None, 0, 0)
    rmc = parse_sentence(b"$GPRMC,,V,,,,,,,,,,N*53")
    assert isinstance(rmc, Rmc) and not rmc.valid and rmc.utc is None


def test_gll_of_the_published_examples() -> None:
    # the NMEA reference's GLL (NMEA 2.0, a trailing empty field), and u-blox's (2.3 mode)
    gll = parse_sentence(b"$GPGLL,4916.45,N,12311.12,W,225444,A,*1D")
    assert isinstance(gll, Gll) and gll.talker == "GP" and gll.valid
    assert gll.latitude == pytest.approx(49 + 16.45 / 60)
    assert gll.longitude == pytest.approx(-(123 + 11.12 / 60))
    assert gll.time == 22 * 3600 + 54 * 60 + 44
    ublox = parse_sentence(b"$GPGLL,4717.11364,N,00833.91565,E,092321.00,A,A*60")
    assert isinstance(ublox, Gll) and ublox.valid and ublox.time == 9 * 3600 + 23 * 60 + 21
    no_fix = parse_sentence(frame("GNGLL,,,,,092321.00,V,N"))
    assert no_fix == Gll("GN", None, None, 33801.0, False)
    not_valid = parse_sentence(frame("GNGLL,4717.11364,N,00833.91565,E,092321.00,A,N"))
    assert isinstance(not_valid, Gll) and not not_valid.valid  # mode N: not valid


def test_zda_of_the_published_examples() -> None:
    zda = parse_sentence(b"$GPZDA,201530.00,04,07,2002,00,00*60")
    assert zda == Zda("GP", 20 * 3600 + 15 * 60 + 30, utc(2002, 7, 4, 20, 15, 30), 0)
    india = parse_sentence(frame("GPZDA,082710.00,16,09,2002,-05,30"))
    assert isinstance(india, Zda) and india.zone_minutes == -(5 * 60 + 30)
    bare = parse_sentence(frame("GNZDA,,,,"))  # a receiver without time yet
    assert bare == Zda("GN", None, None, None)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("GPZDA,201530.00,31,02,2002,00,00", "day): '31' is not a day of that month"),
        ("GPZDA,201530.00,04,13,2002,00,00", "month): '13' is not within 1..12"),
        ("GPZDA,201530.00,04,07,02,00,00", "year): '02' is not within 1980..2999"),
        ("GPZDA,201530.00,04,07", "ZDA: 3 fields, at least 4 expected"),
        ("GPGLL,4916.45,N,12311.12,X,225444,A", "longitude hemisphere"),
        ("GPGLL,4916.45,N,12311.12,W,225444,Q", "status): 'Q' is not one of A, V"),
        ("GPGLL,4916.45,N,12311.12,W", "GLL: 4 fields, at least 6 expected"),
    ],
)
def test_bad_gll_and_zda_fields_are_named(body: str, says: str) -> None:
    with pytest.raises(SentenceError) as error:
        parse_sentence(frame(body))
    assert error.value.reason == "malformed" and says in error.value.detail


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "GB", "BD", "GQ"])
def test_every_talker_is_understood(talker: str) -> None:
    sentence = parse_sentence(frame(f"{talker}RMC,154706.00,A,4724.5288205,N,00937.0842621,E,"
                                    "0.01,144.09,141114,0.00,E,A"))  # fmt: skip
    assert isinstance(sentence, Rmc) and sentence.talker == talker
    assert sentence.latitude == pytest.approx(47 + 24.5288205 / 60)


@pytest.mark.parametrize(
    "line",
    [
        b"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74",
        frame("GPTXT,01,01,02,ANTSTATUS=OK"),
        frame("PUBX,00,081350.00,4717.113210,N"),
    ],
)
def test_valid_sentences_we_do_not_need_are_none(line: bytes) -> None:
    assert parse_sentence(line) is None


@pytest.mark.parametrize(
    ("line", "reason", "says"),
    [
        # published in the SiRF NMEA reference with a checksum that does not add up
        (b"$GPVTG,309.62,T,,M,0.13,N,0.2,K,A*23", "checksum", "23 given, 03 computed"),
        (
            b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*4",
            "checksum",
            "two hex",
        ),
        (
            b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*ZZ",
            "checksum",
            "two hex",
        ),
        (b"$GPGGA,092725.00,4717.1", "truncated", "cut short"),
        (b"GPGGA,123519*47", "unframed", "no '$'"),
        (b"\x00\x13$GPGGA,,,,,,0,00,99.99,,,,,,*48", "unframed", "noise before"),
        (b"$GPGGA,12\xff519*00", "malformed", "non-printable"),
        (b"$" + b"A" * 200 + b"*00", "malformed", "longer than any sentence"),
        (frame("GPGGA,123519,4807.038,N"), "malformed", "at least 9"),
        (
            frame("GPGGA,126519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            "malformed",
            "time of day",
        ),
        (
            frame("GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            "malformed",
            "latitude",
        ),
        (
            frame("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            "malformed",
            "hemisphere",
        ),
        (
            frame("GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            "malformed",
            "±90",
        ),
        (
            frame("GPGGA,123519,4807.038,N,1131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            "malformed",
            "dddmm.mmmm",
        ),
        (
            frame("GPGGA,123519,4807.038,N,01131.000,E,x,08,0.9,545.4,M,46.9,M,,"),
            "malformed",
            "fix quality",
        ),
        (
            frame("GPGGA,123519,4807.038,N,01131.000,E,1,08,nan,545.4,M,46.9,M,,"),
            "malformed",
            "HDOP",
        ),
        (
            frame("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,310294,003.1,W"),
            "malformed",
            "calendar date",
        ),
        (
            frame("GPRMC,123519,Q,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
            "malformed",
            "status",
        ),
        (
            frame("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,400.0,230394,003.1,W"),
            "malformed",
            "course",
        ),
        (frame("gpGGA,123519"), "malformed", "talker+type"),
    ],
)
def test_bad_lines_say_why(line: bytes, reason: str, says: str) -> None:
    with pytest.raises(SentenceError) as error:
        parse_sentence(line)
    assert error.value.reason == reason
    assert says in error.value.detail


def test_checksum_and_frame_agree_with_published_sentences() -> None:
    assert checksum(b"GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,") == 0x47
    assert frame("GPRMC,,V,,,,,,,,,,N") == b"$GPRMC,,V,,,,,,,,,,N*53"
    lower = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6a"
    assert isinstance(parse_sentence(lower), Rmc)  # hex digits in either case


# --- fuzzing ------------------------------------------------------------------------


def _outcome(line: bytes) -> object:
    try:
        return parse_sentence(line)
    except SentenceError as exc:
        assert exc.reason in {"checksum", "truncated", "unframed", "malformed"}
        assert exc.detail
        return exc


@settings(max_examples=2500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_never_crash_the_parser(line: bytes) -> None:
    _outcome(line)


_FIELD = st.text(alphabet="0123456789.,-+NSEWAVTMKabcXYZ*$ ", max_size=14)


@settings(max_examples=2500, deadline=None)
@given(
    kind=st.sampled_from(["GGA", "RMC", "VTG", "GSA", "GLL", "ZDA", "GSV", "ZZZ"]),
    talker=st.sampled_from(["GP", "GN", "GL", "GA", "BD"]),
    fields=st.lists(_FIELD, max_size=20),
)
def test_fuzz_well_framed_sentences_with_random_fields(
    kind: str, talker: str, fields: list[str]
) -> None:
    """Valid checksums, nonsense fields: every field parser is reached; none may crash."""
    body = ",".join([talker + kind, *fields]).replace("*", "").replace("$", "")
    result = _outcome(frame(body))
    if isinstance(result, Gga | Rmc | Gll):
        for angle, limit in ((result.latitude, 90), (result.longitude, 180)):
            assert angle is None or -limit <= angle <= limit


@settings(max_examples=2000, deadline=None)
@given(
    sentence=st.sampled_from([
        b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",
        b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A",
        b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39",
        b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48",
        b"$GPGLL,4916.45,N,12311.12,W,225444,A,*1D",
        b"$GPZDA,201530.00,04,07,2002,00,00*60",
    ]),
    cut=st.integers(min_value=0, max_value=100),
    flip=st.integers(min_value=0, max_value=100),
    bit=st.integers(min_value=0, max_value=7),
)  # fmt: skip
def test_fuzz_truncated_and_bit_flipped_real_sentences(
    sentence: bytes, cut: int, flip: int, bit: int
) -> None:
    truncated = sentence[: cut % len(sentence)]
    assert isinstance(_outcome(truncated), SentenceError | None)
    mangled = bytearray(sentence)
    mangled[flip % len(sentence)] ^= 1 << bit
    # the one harmless flip: the case of a hex letter of the checksum (6A and 6a are equal)
    assume(bytes(mangled).upper() != sentence.upper())
    # one flipped bit is always caught: by the checksum, or by the framing it broke
    assert isinstance(_outcome(bytes(mangled)), SentenceError)


@settings(max_examples=500, deadline=None)
@given(
    lat=st.floats(min_value=-89.999, max_value=89.999),
    lon=st.floats(min_value=-179.999, max_value=179.999),
    seconds=st.integers(min_value=0, max_value=86399),
)
def test_fuzz_positions_round_trip(lat: float, lon: float, seconds: int) -> None:
    def ddmm(value: float, width: int) -> str:
        # round first, so 59.99996' is carried into the degrees rather than printed as 60'
        degrees, minutes = divmod(round(abs(value) * 60, 4), 60)
        return f"{int(degrees):0{width}d}{minutes:07.4f}"

    hms = f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
    body = (f"GNGGA,{hms},{ddmm(lat, 2)},{'N' if lat >= 0 else 'S'},{ddmm(lon, 3)},"
            f"{'E' if lon >= 0 else 'W'},1,10,0.8,12.0,M,,M,,")  # fmt: skip
    gga = parse_sentence(frame(body))
    assert isinstance(gga, Gga)
    assert gga.time == seconds
    assert gga.latitude == pytest.approx(lat, abs=1e-5)
    assert gga.longitude == pytest.approx(lon, abs=1e-5)


@settings(max_examples=500, deadline=None)
@given(
    lat=st.floats(min_value=-89.999, max_value=89.999),
    lon=st.floats(min_value=-179.999, max_value=179.999),
    when=st.datetimes(
        min_value=datetime(1980, 1, 6), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
    ),
)
def test_fuzz_gll_positions_and_zda_dates_round_trip(
    lat: float, lon: float, when: datetime
) -> None:
    def ddmm(value: float, width: int) -> str:
        degrees, minutes = divmod(round(abs(value) * 60, 4), 60)
        return f"{int(degrees):0{width}d}{minutes:07.4f}"

    hms = when.strftime("%H%M%S")
    gll = parse_sentence(frame(f"GNGLL,{ddmm(lat, 2)},{'N' if lat >= 0 else 'S'},"
                               f"{ddmm(lon, 3)},{'E' if lon >= 0 else 'W'},{hms},A,A"))  # fmt: skip
    assert isinstance(gll, Gll) and gll.valid
    assert gll.latitude == pytest.approx(lat, abs=1e-5)
    assert gll.longitude == pytest.approx(lon, abs=1e-5)
    zda = parse_sentence(frame(f"GNZDA,{hms},{when:%d,%m,%Y},00,00"))
    assert isinstance(zda, Zda)
    assert zda.utc == when.replace(microsecond=0).timestamp()
