"""`cityedge central export`: one day of one site as open data, CSV or JSON.

Reads only PUBLIC points (opendata.PUBLIC_POINTS) from the store — the query itself
names them, so nothing else is ever loaded — and writes per-device daily aggregates
(opendata.aggregate). The day is a UTC day.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

from cityedge.central.ingest.opendata import PUBLIC_POINTS, Record, Sample, aggregate

FIELDS = ("site", "day", "device", "category", "metric", "value", "unit", "samples")


class ExportError(Exception):
    """The store cannot be read."""


def day_bounds(day: dt.date) -> tuple[float, float]:
    start = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
    return start, start + 86400.0


async def fetch(store_url: str, site: str, day: dt.date) -> list[Sample]:
    start, end = day_bounds(day)
    points = sorted(PUBLIC_POINTS)
    if store_url.startswith(("postgresql://", "postgres://")):
        import asyncpg

        try:
            conn = await asyncpg.connect(store_url, timeout=30)
            try:
                rows = await conn.fetch(
                    "SELECT device, point, num, extract(epoch FROM ts) AS t FROM readings "
                    "WHERE site = $1 AND ts >= to_timestamp($2) AND ts < to_timestamp($3) "
                    "AND point = ANY($4::text[]) AND num IS NOT NULL ORDER BY ts",
                    site, start, end, points,
                )  # fmt: skip
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ExportError(f"postgresql: {exc}") from None
        return [(r["device"], r["point"], float(r["num"]), float(r["t"])) for r in rows]
    path = Path(store_url.removeprefix("sqlite://").removeprefix("sqlite:"))
    return await asyncio.to_thread(_fetch_sqlite, path, site, start, end, points)


def _fetch_sqlite(path: Path, site: str, start: float, end: float,
                  points: list[str]) -> list[Sample]:  # fmt: skip
    if not path.exists():
        raise ExportError(f"sqlite {path}: no such file")
    marks = ",".join("?" * len(points))
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                f"SELECT device, point, num, ts FROM readings WHERE site = ? AND ts >= ? "
                f"AND ts < ? AND point IN ({marks}) AND num IS NOT NULL ORDER BY ts",
                (site, start, end, *points),
            ).fetchall()
    except sqlite3.Error as exc:
        raise ExportError(f"sqlite {path}: {exc}") from None
    return [(str(d), str(p), float(n), float(t)) for d, p, n, t in rows]


def render(records: list[Record], site: str, day: dt.date, fmt: str) -> str:
    rows = [{"site": site, "day": day.isoformat(), **asdict(r)} for r in records]
    if fmt == "json":
        doc = {"site": site, "day": day.isoformat(), "licence": "open data of the city",
               "fields": list(FIELDS), "records": rows}  # fmt: skip
        return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


async def export(store_url: str, site: str, day: dt.date, fmt: str) -> str:
    return render(aggregate(await fetch(store_url, site, day)), site, day, fmt)
