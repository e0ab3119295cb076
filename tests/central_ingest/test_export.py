"""Open data: a day of a site as CSV and JSON, per-device daily aggregates of public
points only — nothing personal or internal ever leaves, whatever the store holds —
and every point a gateway can send is classified, in code and in docs/open-data.md."""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from pathlib import Path

import pytest

from cityedge.central.ingest.decode import Decoded, Decoder
from cityedge.central.ingest.opendata import (
    INTERNAL_POINTS,
    PERSONAL_POINTS,
    PUBLIC_POINTS,
    Class,
    classify,
)
from cityedge.central.ingest.store.select import open_store
from cityedge.central.verifier import Verifier
from cityedge.drivers.nmea.receiver import POINTS as NMEA_POINTS
from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import seal
from cityedge.sdk.model import Reading, Value
from tests.support.agent_process import ROOT, cityedge

DAY = "2026-06-01"
T0 = 1_780_272_000.0  # 2026-06-01T00:00:00Z
SECRETS = ("48.8583701", "2.2944813", "AA:BB:CC:DD:EE:FF", "AB-123-CD", "van-07", "231.7")


def _readings() -> list[Reading]:
    r: list[tuple[str, str, Value, float, str | None]] = []
    for h in range(0, 24, 2):  # a day of two lampposts, a bin, air, noise, parking...
        t = T0 + 3600 * h
        r += [("lamppost-001", "energy", 100.0 + h * 0.05, t, "kWh"),
              ("lamppost-001", "dimming", 50 if h < 6 or h > 20 else 100, t, "%"),
              ("lamppost-002", "energy", 7.0 + h * 0.1, t, "kWh"),
              ("bin-01", "fill", 10.0 + 3 * h, t, "%"),
              ("air-01", "pm25", 12.0 + h % 5, t, "µg/m³"),
              ("air-01", "noise_laeq", 55.0 + h % 7, t, "dB(A)"),
              ("bay-01", "occupied", h % 3 == 0, t, None),
              # ...and what must never leave: internal and personal points
              ("lamppost-001", "voltage", 231.7, t, "V"),
              ("van-07", "latitude", 48.8583701, t, "°"),
              ("van-07", "longitude", 2.2944813, t, "°"),
              ("ble-gate", "ble_address", "AA:BB:CC:DD:EE:FF", t, None),
              ("camera-1", "plate", "AB-123-CD", t, None)]  # fmt: skip
    r.append(("lamppost-001", "energy", 999.0, T0 + 86400 + 10, "kWh"))  # the next day
    return [Reading(*x) for x in r]


async def _fill(store_url: str) -> None:
    key = SigningKey.from_seed(bytes([9]) * 32)
    payload = seal(key, gateway="gw-1", site="north", kind="telemetry", seq=1, ts=T0,
                   historical=False, entries=[reading_entry(r) for r in _readings()])  # fmt: skip
    decoded = Decoder(Verifier({key.key_id: key.public_key})).decode(
        "cityedge/v2/north/gw-1/telemetry", payload
    )
    assert isinstance(decoded, Decoded)
    store = open_store(store_url)
    await store.open()
    try:
        await store.write([decoded], [])
    finally:
        await store.close()


async def test_export_publishes_aggregates_of_public_points_and_nothing_else(
    store_url: str,
) -> None:
    await _fill(store_url)
    done_csv = cityedge("central", "export", "--store", store_url, "--site", "north",
                        "--day", DAY, "--format", "csv")  # fmt: skip
    done_json = cityedge("central", "export", "--store", store_url, "--site", "north",
                         "--day", DAY, "--format", "json")  # fmt: skip
    assert done_csv.returncode == 0, done_csv.stderr
    assert done_json.returncode == 0, done_json.stderr
    for text in (done_csv.stdout, done_json.stdout):
        for secret in SECRETS:
            assert secret not in text
        for point in INTERNAL_POINTS | PERSONAL_POINTS:
            assert not re.search(rf"\b{re.escape(point)}\b", text.replace("_mean", "")
                                 .replace("_max", "")), point  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(done_csv.stdout)))
    doc = json.loads(done_json.stdout)
    assert [{k: str(v) for k, v in r.items()} for r in doc["records"]] == rows
    got = {(r["device"], r["metric"]): float(r["value"]) for r in rows}
    assert got[("lamppost-001", "energy_kwh")] == pytest.approx(1.1)  # 22 h x 0.05
    assert got[("lamppost-002", "energy_kwh")] == pytest.approx(2.2)
    assert got[("bin-01", "fill_last_pct")] == 76.0
    assert got[("bay-01", "occupancy_pct")] == pytest.approx(100 * 4 / 12, abs=0.001)
    assert ("air-01", "laeq_day_db") in got and ("air-01", "pm25_mean") in got
    assert got[("lamppost-001", "saving_kwh")] > 0
    assert {r["device"] for r in rows} == {"lamppost-001", "lamppost-002", "bin-01", "air-01",
                                          "bay-01"}  # fmt: skip


def test_export_refuses_bad_arguments(tmp_path: Path) -> None:
    done = cityedge("central", "export", "--store", f"sqlite:{tmp_path / 'none.db'}",
                    "--site", "north", "--day", "2026-13-01")  # fmt: skip
    assert done.returncode == 2 and "--day" in done.stderr
    done = cityedge("central", "export", "--store", f"sqlite:{tmp_path / 'none.db'}",
                    "--site", "north", "--day", DAY)  # fmt: skip
    assert done.returncode == 4 and "no such file" in done.stderr


def _known_points() -> set[str]:
    names: set[str] = set()
    for path in [*ROOT.glob("config/profiles/*.toml"), *ROOT.glob("config/lorawan/*.toml")]:
        doc = tomllib.loads(path.read_text())
        tables = list(doc.get("points", []))
        for frame in doc.get("frame", []):
            tables += [f for f in frame.get("field", []) if f.get("emit", True)]
            tables += frame.get("derive", [])
        for table in tables:
            names.add(table["name"])
            names |= {bit["name"] for bit in table.get("bits", [])}
    return names | {p.name for p in NMEA_POINTS.values()}


def test_every_point_a_gateway_can_send_is_classified_in_code_and_docs() -> None:
    doc = (ROOT / "docs" / "open-data.md").read_text()
    unclassified = []
    for point in sorted(_known_points()):
        if point not in PUBLIC_POINTS and point not in INTERNAL_POINTS | PERSONAL_POINTS:
            unclassified.append(point)
        expected = classify(point)
        assert re.search(rf"^\| `{re.escape(point)}` \| {expected} \|", doc, re.M), point
    assert unclassified == []
    assert classify("something-new") is Class.PERSONAL  # unknown: never published
