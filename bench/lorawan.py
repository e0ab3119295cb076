"""LoRaWAN at the edge: frames decoded per second on one core, and the agent's CPU
at a steady 50 frames/s from a packet forwarder.

1. Decode rate: 200 ABP sensors (bins, environment stations, parking sensors)
   send encrypted, signed uplinks; the driver's decision path (`UplinkDecoder`:
   parse, session, counter committed to SQLite, MIC, decryption, codec, alarms)
   runs over them in a loop. Baseline in the same run: the cryptography alone
   (MIC + decryption of the same frames), the floor any decoder pays.
2. Agent CPU: the real agent (a subprocess) listens for GWMP on loopback; two
   simulated packet forwarders send the same frames at 50 frames/s for a few
   seconds; the agent's CPU % of one core is read from /proc.

    .venv/bin/python bench/lorawan.py [--frames 20000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cityedge.drivers.lorawan.decoders import load_device_types
from cityedge.drivers.lorawan.fcnt import FrameCounters
from cityedge.drivers.lorawan.frames import (
    build_uplink,
    crypt_frm_payload,
    parse_uplink,
    verify_mic,
)
from cityedge.drivers.lorawan.keyring import Keyring, Session
from cityedge.drivers.lorawan.uplinks import Radio, UplinkDecoder

TARGET_FPS = 5000
RADIO = Radio(rssi=-101.0, snr=4.0, spreading_factor=9, frequency=868.3, forwarders=("AA",))


def sensors(count: int) -> list[Session]:
    kinds = ("waste-bin", "environment-station", "parking-sensor")
    return [
        Session(f"sensor-{i:04d}", kinds[i % 3], 0x26000000 + i,
                os.urandom(16), os.urandom(16))
        for i in range(count)
    ]  # fmt: skip


def payload_for(device_type: str, i: int) -> tuple[int, bytes]:
    """A plausible report for each shipped type (layouts: docs/lorawan-devices.md)."""
    from cityedge.street.lorawan_reports import example_payload

    return example_payload(device_type, i)


def make_frames(devices: list[Session], count: int) -> list[bytes]:
    frames = []
    for n in range(count):
        s = devices[n % len(devices)]
        fport, body = payload_for(s.device_type, n)
        frames.append(build_uplink(s.dev_addr, n // len(devices) + 1, fport, body,
                                   s.nwk_skey, s.app_skey))  # fmt: skip
    return frames


def decode_rate(workdir: Path, devices: list[Session], frames: list[bytes]) -> tuple[float, int]:
    decoder = UplinkDecoder("bench", Keyring(devices), FrameCounters(workdir / "fcnt.db"),
                            load_device_types())  # fmt: skip
    start = time.process_time()
    readings = 0
    for f in frames:
        readings += len(decoder.decode(f, RADIO))
    elapsed = time.process_time() - start
    assert not decoder.refused, decoder.refused
    return len(frames) / elapsed, readings


def crypto_floor(devices: list[Session], frames: list[bytes]) -> float:
    by_addr = {s.dev_addr: s for s in devices}
    start = time.process_time()
    for f in frames:
        up = parse_uplink(f)
        s = by_addr[up.dev_addr]
        verify_mic(s.nwk_skey, up, up.fcnt16)
        crypt_frm_payload(s.app_skey, up.dev_addr, up.fcnt16, up.frm_payload)
    return len(frames) / (time.process_time() - start)


def main(count: int, seconds: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cityedge-bench-"))
    devices = sensors(200)
    frames = make_frames(devices, count)
    print(f"decoding {count} frames from {len(devices)} sensors …", flush=True)
    rate, readings = decode_rate(workdir, devices, frames)
    floor = crypto_floor(devices, frames)
    print(f"decoder: {rate:8.0f} frames/s on one core ({readings / count:.1f} readings a frame)")
    print(f"crypto only (MIC + decrypt): {floor:8.0f} frames/s")
    print(f"ratio decoder / crypto floor: {rate / floor:.2f}")
    print(f"ratio decoder / target {TARGET_FPS}: {rate / TARGET_FPS:.2f} "
          f"({'met' if rate >= TARGET_FPS else 'NOT met'})")  # fmt: skip
    if seconds > 0:
        asyncio.run(agent_cpu(workdir, devices, seconds))


async def agent_cpu(workdir: Path, devices: list[Session], seconds: float) -> None:
    from tests.lorawan.site import lorawan_site

    async with lorawan_site(workdir, devices) as site:
        rate = 50.0
        pid = site.agent_pid
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        sent = await site.send_steady(rate, seconds)
        cpu1, t1 = _cpu_seconds(pid), time.monotonic()
        await site.wait_delivered(sent)
        cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
        print(
            f"agent at {rate:g} frames/s for {seconds:g} s: {cpu:.1f} % of one core; "
            f"{site.delivered()} of {sent} frames verified at the command post"
        )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    main(args.frames, args.seconds)
