"""A technician's override against a running lighting program, end to end: the real
agent (subprocess), simulated lampposts over Modbus TCP, a real Mosquitto, the real
`cityedge` CLI, and a command post that verifies what the gateway reports.

The gateway is placed (latitude 0, a longitude found here) so that it is "night" for
the program now and its next step — sunset — comes less than two minutes after the start:
the override must hold through many program checks (`recheck_s = 1`), end when the
technician ends it, and be superseded (not restored) at the program's step.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

from cityedge.gateway.control.client import ControlClient
from cityedge.gateway.lighting import Sky, level_at, load_lighting
from cityedge.protocol.key_files import create_key, load_signing_key
from cityedge.sdk.model import Event
from cityedge.street.broker import Broker
from tests.support.command_post import CommandPost
from tests.technician.site import (
    StreetThread,
    TechnicianAgent,
    remove,
    short_dir,
    technician,
    write_config,
)

LEAD_S = 110.0  # from writing the config to the program's step (sunset)
HOLD_S = 35.0  # 35 checks at recheck_s = 1, and past the default 30 s check
LAMPS = ["lamppost-001", "lamppost-002"]


def lighting_table() -> dict[str, object]:
    return {
        "version": 1,
        "recheck_s": 1.0,
        "programs": {"evening": {"steps": [{"at": "12:00", "level": 50},
                                           {"at": "sunset", "level": 30}]}},
        "groups": [{"name": "street", "devices": LAMPS, "program": "evening"}],
    }  # fmt: skip


def place_with_sunset_at(target: dt.datetime) -> tuple[float, str]:
    """(longitude, time zone) on the equator where the sun sets at `target`: sunset is
    near 18:00 solar time there all year; the longitude moves it 4 minutes a degree."""
    hours = target.hour + target.minute / 60 + target.second / 3600
    longitude = (15 * (18 - hours) + 180) % 360 - 180
    offset = round(longitude / 15)
    zone = "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3
    for _ in range(6):
        sky = Sky(0.0, longitude, zone)
        sunset = sky.sun(target.astimezone(sky.tz).date())[1]
        longitude += (sunset - target).total_seconds() / 240  # later sunset: go east
    return longitude, zone


def override_events(post: CommandPost, device: str) -> list[Event]:
    return [e for e in post.events if e.kind == "local.override" and e.source == device]


async def poll(condition: object, timeout: float, every: float = 0.2) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(every)
    return bool(condition())


async def test_an_override_holds_until_the_program_step_which_supersedes_it(
    tmp_path: Path,
) -> None:
    sunset = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=LEAD_S)
    longitude, zone = place_with_sunset_at(sunset)
    sky = Sky(0.0, longitude, zone)
    lighting = load_lighting(lighting_table())
    now_level, step, _ = level_at(lighting, lighting.groups[0], dt.datetime.now(dt.UTC), sky)
    # the setup itself: night for the program now, its next step about LEAD_S away
    assert now_level == 50 and abs((step - sunset).total_seconds()) < 5, (now_level, step)
    sockets = short_dir()
    socket = sockets / "control.sock"
    try:
        with StreetThread(lampposts=2) as street, Broker(workdir=tmp_path / "broker") as broker:
            create_key(tmp_path / "state" / "keys" / "gateway.key")
            config = write_config(
                tmp_path,
                broker_port=broker.port,
                socket=socket,
                modbus=[street.street.driver_tables(name="street", poll_interval=0.5)],
                gateway={"latitude": 0.0, "longitude": longitude, "timezone": zone},
                lighting=lighting_table(),
            )
            key = load_signing_key(tmp_path / "state" / "keys" / "gateway.key")
            async with CommandPost(broker.port, key.public_key) as post:
                with TechnicianAgent(config, socket) as agent:

                    def levels() -> list[object]:
                        return [street.street.register(lamp, "dimming") for lamp in LAMPS]

                    assert await poll(lambda: levels() == [50, 50], 30), (levels(), agent.logs())

                    async def cli(*args: str) -> None:
                        done = await asyncio.to_thread(technician, *args, "-c", str(config))
                        assert done.returncode == 0, done.stderr + done.stdout

                    await cli("write", "lamppost-002", "dimming", "100", "--for", "30m")
                    await cli("write", "lamppost-001", "dimming", "90", "--for", "30m")
                    # many program checks later, both lampposts still at their override
                    held_from = time.monotonic()
                    while time.monotonic() - held_from < HOLD_S:
                        assert levels() == [90, 100], (levels(), agent.logs()[-3000:])
                        await asyncio.sleep(0.1)
                    assert dt.datetime.now(dt.UTC) < sunset, "the setup took longer than LEAD_S"
                    await cli("write", "lamppost-001", "dimming", "--end")
                    assert street.street.register("lamppost-001", "dimming") == 50
                    assert street.street.register("lamppost-002", "dimming") == 100

                    # sunset: the program's step takes lamppost-002 over
                    wait = (sunset - dt.datetime.now(dt.UTC)).total_seconds() + 20
                    assert await poll(lambda: levels() == [30, 30], wait), levels()
                    client = ControlClient(socket, timeout=10)
                    in_force = await asyncio.to_thread(client.call, "overrides")
                    assert in_force == [], in_force

                    def reported() -> bool:
                        return len(override_events(post, "lamppost-002")) == 2

                    assert await post.wait_for(reported, timeout=20), post.events
            started, superseded = override_events(post, "lamppost-002")
            assert started.active is True and started.data["value"] == 100
            assert superseded.active is False and superseded.data["ended"] == "superseded"
            assert superseded.data["by"]["level"] == 30
            assert superseded.data["by"]["program"] == "evening"
            begun, restored = override_events(post, "lamppost-001")
            assert begun.active is True and begun.data["value"] == 90
            assert restored.active is False and restored.data["ended"] == "cleared"
            assert restored.data["previous"] == 50 and "restored" not in restored.data
            assert post.rejected == []
    finally:
        remove(sockets)
