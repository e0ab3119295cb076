"""Command round trip on loopback: central send → device write (+ read-back) → signed
result verified at the command post.

The real agent (a subprocess) runs against two simulated lampposts and a private
Mosquitto. A command-post client that stays connected, as the central platform
does, signs and publishes `write dimming` commands one after the other and waits
for each verified result. Measured in the same run:

* the round trip of each command (median, p95, p99, max);
* the device's own share: the same write and read-back done directly over Modbus
  TCP to the same simulated lamppost (what the agent cannot make faster);
* the CLI's path (`send_command`: connect, find nothing, subscribe, send, wait),
  for a few commands, to show what a fresh connection costs.

Printed: p99 minus the device's median share against the 50 ms target.

    .venv/bin/python bench/command_roundtrip.py [--commands 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt

from cityedge.central.commands import new_command, send_command
from cityedge.central.verifier import Verifier
from cityedge.central.watch import payload_bytes
from cityedge.drivers.modbus.profile import resolve_profile
from cityedge.drivers.modbus.tcp import TcpLink
from cityedge.protocol.commands import command_digest, seal_command
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.mqtt import MQTT_SOCKET_OPTIONS
from cityedge.protocol.topics import topic_for
from cityedge.sdk.logs import configure_logging
from cityedge.street.broker import Broker
from cityedge.street.modbus import ModbusStreet
from tests.support.agent_process import AgentProcess, to_toml
from tests.support.command_post import CommandPost

TARGET_P99_MS = 50.0
POLICY = {"lamppost": {"writes": {"dimming": {"min": 0, "max": 100}}}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def device_share(street: ModbusStreet, count: int) -> list[float]:
    """Write + read back `dimming` straight over Modbus: the device's own time."""
    point = resolve_profile("lamppost").points["dimming"]
    device = street.devices[1]  # not the one the agent is commanding
    link = TcpLink(device.host, device.port, timeout=2.0)
    await link.open(2.0)
    times = []
    try:
        for i in range(count):
            start = time.perf_counter()
            await link.write(point.register, point.address, [i % 100], unit=1, timeout=2.0)
            await link.read(point.register, point.address, point.size, unit=1, timeout=2.0)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        await link.close()
    return times


async def persistent_round_trips(
    broker: Broker, central: SigningKey, gateway: SigningKey, count: int, op: str = "write"
) -> list[float]:
    verifier = Verifier({gateway.key_id: gateway.public_key})
    command_topic = topic_for("cityedge/v2", "bench", "gw-bench", "command")
    result_topic = topic_for("cityedge/v2", "bench", "gw-bench", "result")
    times: list[float] = []
    # A central platform's client keeps its connection and turns Nagle off, as ours does.
    central_client = aiomqtt.Client(
        "127.0.0.1", broker.port, identifier="bench-central", socket_options=MQTT_SOCKET_OPTIONS
    )
    async with central_client as client:
        await client.subscribe(result_topic, qos=1)
        messages = aiter(client.messages)
        for i in range(count):
            if op == "write":
                cmd = new_command(central, "gw-bench", "write", device="lamppost-001",
                                  args={"point": "dimming", "value": i % 100})  # fmt: skip
            else:
                cmd = new_command(central, "gw-bench", op)
            sealed = seal_command(central, cmd)
            digest = command_digest(sealed)  # a result names the exact bytes it answers
            start = time.perf_counter()
            await client.publish(command_topic, sealed, qos=1)
            async with asyncio.timeout(10):
                while True:
                    message = await anext(messages)
                    verdict = verifier.verify(result_topic, payload_bytes(message.payload))
                    if verdict.message is not None and any(
                        r["digest"] == digest for r in verdict.message.results
                    ):
                        break
            times.append((time.perf_counter() - start) * 1000)
            if (i + 1) % 100 == 0:
                print(f"  … {i + 1}/{count} commands", flush=True)
    return times


async def cli_round_trips(
    broker: Broker, central: SigningKey, gateway: SigningKey, count: int
) -> list[float]:
    times = []
    for i in range(count):
        cmd = new_command(central, "gw-bench", "write", device="lamppost-001",
                          args={"point": "dimming", "value": i % 100})  # fmt: skip
        start = time.perf_counter()
        await send_command(broker.url, central, cmd, site="bench",
                           trusted={gateway.key_id: gateway.public_key}, within=10)  # fmt: skip
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(name: str, times: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(times):6.2f} ms  p95 {pct(times, 0.95):6.2f}"
        f"  p99 {pct(times, 0.99):6.2f}  max {max(times):6.2f}  (n={len(times)})"
    )


async def main(commands: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cityedge-bench-"))
    gateway = create_key(workdir / "state" / "keys" / "gateway.key")
    central = create_key(workdir / "central.key")
    with Broker(workdir=workdir / "broker") as broker:
        async with ModbusStreet(lampposts=2, meters=0) as street:
            device = await device_share(street, commands)
            doc = {
                "gateway": {"id": "gw-bench", "site": "bench", "state_dir": str(workdir / "state")},
                "uplink": {"host": "127.0.0.1", "port": broker.port},
                "keys": {"trust": [central.public_text()]},
                "policy": POLICY,
                "logging": {"level": "warning", "format": "json"},
                "drivers": {"modbus": [street.driver_tables(name="street", poll_interval=5.0)]},
            }
            config = workdir / "agent.toml"
            config.write_text(to_toml(doc))
            async with CommandPost(broker.port, gateway.public_key) as post:
                agent = AgentProcess(config).start()
                try:
                    if not await post.wait_for(lambda: bool(post.states), timeout=30):
                        raise SystemExit("the agent did not come online:\n" + agent.logs())
                    await persistent_round_trips(broker, central, gateway, 10)  # warm-up
                    print(f"persistent central connection: {commands} commands", flush=True)
                    kept = await persistent_round_trips(broker, central, gateway, commands)
                    pings = await persistent_round_trips(broker, central, gateway, 50, "ping")
                    cli = await cli_round_trips(broker, central, gateway, 20)
                    writes = street.write_requests("lamppost-001")
                finally:
                    agent.stop()

    device_median = statistics.median(device)
    p99 = pct(kept, 0.99)
    print()
    print(summary("device write + read-back (direct)", device))
    print(summary("round trip, connected central", kept))
    print(summary("ping round trip, connected central", pings))
    print(summary("round trip, CLI (new connection)", cli))
    print(f"device writes counted at the simulator: {writes} (commands sent: {commands + 30})")
    agent_p99 = p99 - device_median
    print(
        f"p99 without the device's share: {agent_p99:.2f} ms — target ≤ {TARGET_P99_MS:g} ms "
        f"({'met' if agent_p99 <= TARGET_P99_MS else 'NOT met'}); "
        f"ratio to target {agent_p99 / TARGET_P99_MS:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300)
    args = parser.parse_args()
    configure_logging("warning")  # the command post's per-command log lines would bury the figures
    asyncio.run(main(args.commands))
