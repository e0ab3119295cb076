"""Epochs → readings: which points a fix gives, no-fix handling, fix events, the rate limit."""

from __future__ import annotations

from cityedge.drivers.nmea.receiver import FIX_LOST, POINTS, Receiver
from cityedge.drivers.nmea.sentence import frame, parse_sentence
from cityedge.sdk.model import Event, Reading, Severity


def sentence(body: str) -> object:
    parsed = parse_sentence(frame(body))
    assert parsed is not None
    return parsed


def feed(receiver: Receiver, bodies: list[str], start: float = 0.0) -> list[Reading | Event]:
    items: list[Reading | Event] = []
    for i, body in enumerate(bodies):
        items += receiver.feed(sentence(body), start + i * 0.01)  # type: ignore[arg-type]
    return items


def epoch(hms: str, *, fix: int = 1, lat: str = "4807.038", speed: str = "010.0") -> list[str]:
    """One u-blox style burst: RMC, VTG, GGA, GSA."""
    valid = "A" if fix else "V"
    return [
        f"GPRMC,{hms},{valid},{lat},N,01131.000,E,{speed},084.4,230394,,,A",
        f"GPVTG,084.4,T,,M,{speed},N,,K,{'A' if fix else 'N'}",
        f"GPGGA,{hms},{lat},N,01131.000,E,{fix},08,0.9,545.4,M,46.9,M,,",
        f"GPGSA,A,{3 if fix else 1},04,05,,09,12,,,24,,,,,2.5,1.3,2.1",
    ]


def values(items: list[Reading | Event]) -> dict[str, object]:
    return {i.point: i.value for i in items if isinstance(i, Reading)}


def test_an_epoch_closes_when_the_next_begins_and_gives_one_set() -> None:
    receiver = Receiver("bus-12-gps", "gps", interval=0)
    assert feed(receiver, epoch("123519")) == []  # still open: more may come
    items = feed(receiver, epoch("123520")[:1])  # the next RMC closes it
    got = values(items)
    assert got == {
        "fix": 1, "fix_mode": 3, "satellites": 8, "hdop": 0.9, "latitude": 48.1173,
        "longitude": 11.5166667, "altitude": 545.4, "speed": 18.52, "heading": 84.4,
        "clock_hint": 764426119.0,
    }  # fmt: skip
    assert {r.point: r.unit for r in items if isinstance(r, Reading)}["speed"] == "km/h"
    assert set(got) <= set(POINTS)
    assert len({i.ts for i in items}) == 1  # one set, one time


def test_flush_closes_the_open_epoch() -> None:
    receiver = Receiver("gps", "gps", interval=0)
    feed(receiver, epoch("123519"))
    assert values(receiver.flush())["latitude"] == 48.1173
    assert receiver.flush() == []


def test_a_repeated_sentence_type_closes_an_epoch_without_times() -> None:
    receiver = Receiver("gps", "gps", interval=0)
    cold = ["GPRMC,,V,,,,,,,,,,N", "GPVTG,,,,,,,,,N", "GPGGA,,,,,,0,00,99.99,,,,,,",
            "GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99"]  # fmt: skip
    feed(receiver, cold)
    items = feed(receiver, cold[:1])
    assert values(items) == {"fix": 0, "fix_mode": 1, "satellites": 0, "hdop": 99.99}


def test_no_fix_gives_no_position_and_raises_fix_lost_until_a_fix_comes() -> None:
    receiver = Receiver("gps", "gps", interval=0)
    items = feed(receiver, epoch("000001", fix=0)) + receiver.flush()
    assert "latitude" not in values(items) and values(items)["fix"] == 0
    events = [i for i in items if isinstance(i, Event)]
    assert [(e.kind, e.active, e.severity) for e in events] == [
        (FIX_LOST, True, Severity.WARNING)
    ]  # starting without a fix is news
    items = feed(receiver, epoch("000002")) + receiver.flush()
    assert values(items)["latitude"] == 48.1173
    assert [(e.kind, e.active) for e in items if isinstance(e, Event)] == [(FIX_LOST, False)]
    assert receiver.latest["latitude"].value == 48.1173

    items = feed(receiver, epoch("000003", fix=0)) + receiver.flush()
    assert [(e.kind, e.active) for e in items if isinstance(e, Event)] == [(FIX_LOST, True)]
    assert "latitude" not in receiver.latest  # read() must not offer a stale position
    assert receiver.latest["fix"].value == 0


def test_starting_with_a_fix_raises_nothing() -> None:
    receiver = Receiver("gps", "gps", interval=0)
    items = feed(receiver, epoch("000001")) + receiver.flush()
    assert not [i for i in items if isinstance(i, Event)]


def test_a_stale_position_in_a_no_fix_sentence_is_not_reported() -> None:
    # a receiver that lost its fix keeps sending the last position with quality 0
    receiver = Receiver("gps", "gps", interval=0)
    feed(receiver, ["GPGGA,210210.000,5347.5779,N,00754.1630,E,0,00,0.0,52.8,M,0.0,M,,0000"])
    assert values(receiver.flush()) == {"fix": 0, "satellites": 0, "hdop": 0.0}


def test_at_most_one_set_per_interval_in_receiver_time_and_fix_changes_at_once() -> None:
    receiver = Receiver("gps", "gps", interval=5)
    items: list[Reading | Event] = []
    for second in range(12):  # twelve 1 Hz epochs, fed as fast as the test runs
        items += feed(receiver, epoch(f"1235{second:02d}"))
    items += receiver.flush()
    sets = sorted({i.ts for i in items if isinstance(i, Reading)})
    assert len(sets) == 3  # 12:35:00, :05, :10 — however fast they were fed
    hints = [i.value for i in items if isinstance(i, Reading) and i.point == "clock_hint"]
    assert [h - hints[0] for h in hints] == [0, 5, 10]  # type: ignore[operator]
    # but a lost fix is reported in the epoch it happens, interval or not
    items = feed(receiver, epoch("123512", fix=0)) + receiver.flush()
    assert values(items)["fix"] == 0


def test_the_interval_works_across_midnight() -> None:
    receiver = Receiver("gps", "gps", interval=2)
    items: list[Reading | Event] = []
    for hms in ("235958", "235959", "000000", "000001", "000002"):
        items += feed(receiver, epoch(hms))
    items += receiver.flush()
    assert len({i.ts for i in items if isinstance(i, Reading)}) == 3  # :58, :00, :02


def test_multi_constellation_gsa_takes_the_best_mode_and_vtg_speed_wins() -> None:
    receiver = Receiver("gps", "gps", interval=0)
    feed(receiver, [
        "GNRMC,154706.00,A,4724.5288205,N,00937.0842621,E,0.01,144.09,141114,0.00,E,A",
        "GNVTG,144.09,T,,M,0.01,N,0.02,K,A",
        "GNGSA,A,3,02,05,13,15,18,20,29,,,,,,1.3,0.7,1.1",
        "GNGSA,A,1,,,,,,,,,,,,,1.3,0.7,1.1",
    ])  # fmt: skip
    got = values(receiver.flush())
    assert got["fix_mode"] == 3 and got["fix"] == 1 and got["speed"] == 0.02
    assert got["hdop"] == 0.7  # no GGA: the GSA's dilution stands in
    assert got["latitude"] == 47.4088137


def test_a_receiver_sending_gll_and_zda_only_gives_fix_position_and_clock() -> None:
    receiver = Receiver("tram-3-gps", "gps", interval=0)
    feed(receiver, ["GNGLL,4717.11364,N,00833.91565,E,092321.00,A,A",
                    "GNZDA,092321.00,14,11,2014,00,00"])  # fmt: skip
    got = values(receiver.flush())
    assert got == {"fix": 1, "latitude": 47.2852273, "longitude": 8.5652608,
                   "clock_hint": 1415957001.0}  # 2014-11-14T09:23:21Z  # fmt: skip


def test_a_void_gll_is_no_fix_and_zda_alone_is_no_clock_hint() -> None:
    receiver = Receiver("tram-3-gps", "gps", interval=0)
    items = feed(receiver, ["GNGLL,,,,,092321.00,V,N", "GNZDA,092321.00,14,11,2014,00,00"])
    items += receiver.flush()
    assert values(items) == {"fix": 0}  # a receiver's clock without a fix is not a hint
    assert [(e.kind, e.active) for e in items if isinstance(e, Event)] == [(FIX_LOST, True)]


def test_gga_and_rmc_win_over_gll_and_zda_in_one_epoch() -> None:
    receiver = Receiver("bus-12-gps", "gps", interval=0)
    feed(receiver, [*epoch("123519"), "GPGLL,5000.000,N,00100.000,E,123519,A",
                    "GPZDA,123519,23,03,1994,00,00"])  # fmt: skip
    got = values(receiver.flush())
    assert (got["latitude"], got["longitude"]) == (48.1173, 11.5166667)  # GGA's
    assert got["clock_hint"] == 764426119.0  # RMC's (the same instant as the ZDA)
