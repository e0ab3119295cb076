"""`cityedge central watch` as a real subprocess against a real Mosquitto: it prints the
readings it verified and says why it refused a message; exit status tells the rest."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cityedge.central.link import BrokerError, BrokerUrl, BrokerUrlError, parse_broker_url
from cityedge.central.verifier import Outcome, Verdict
from cityedge.central.watch import watch
from cityedge.protocol.entries import event_entry, reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import seal, seal_object
from cityedge.sdk.model import Event, Quality, Reading, Severity
from cityedge.street.broker import Broker, free_port
from tests.protocol.street import GATEWAY, ROOT, SITE, cli, publish, topic

STRANGER = SigningKey.from_seed(bytes([99]) * 32)


def telemetry(
    key: SigningKey,
    seq: int,
    readings: list[Reading],
    *,
    gateway: str = GATEWAY,
    hist: bool = False,
) -> bytes:
    return seal(
        key,
        gateway=gateway,
        site=SITE,
        kind="telemetry",
        seq=seq,
        ts=1700000001.0,
        historical=hist,
        entries=[reading_entry(r) for r in readings],
    )


async def start_watch(*args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *cli("central", "watch", *args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 30)  # subscribed: safe to publish
    assert line.startswith(b"watching "), line
    return proc


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_watch_prints_verified_readings_and_says_why_it_rejects(
    broker: Broker, gw_key: SigningKey
) -> None:
    proc = await start_watch(
        "--broker",
        broker.url,
        "--trust",
        f"{GATEWAY}={gw_key.public_text()}",
        "--count",
        "7",
        "--timeout",
        "60",
    )
    good = telemetry(
        gw_key,
        1,
        [
            Reading("lamppost-03", "power", 41.5, 1700000000.25, "W"),
            Reading("lamppost-03", "lamp_on", True, 1700000000.25),
        ],
    )
    tampered = bytearray(telemetry(gw_key, 2, [Reading("lamppost-03", "power", 9999.0, 1.0)]))
    tampered[-5] ^= 0x10
    backlog = telemetry(
        gw_key,
        4,
        [
            Reading("meter-1", "energy", 1234, 1690000000.0, "Wh", Quality.CLOCK_UNSYNCED),
        ],
        hist=True,
    )
    alarm = seal(
        gw_key,
        gateway=GATEWAY,
        site=SITE,
        kind="event",
        seq=5,
        ts=1700000002.0,
        historical=False,
        entries=[
            event_entry(
                Event(
                    "lamppost.lamp_failure",
                    "lamppost-03",
                    1700000002.0,
                    Severity.ALARM,
                    True,
                    {"lamp": 2},
                )
            )
        ],
    )
    other_gateway = telemetry(gw_key, 1, [Reading("x", "y", 1, 1.0)], gateway="gw-18")
    await publish(
        broker.port,
        (topic("telemetry"), good, False),
        (topic("telemetry"), bytes(tampered), False),
        (topic("telemetry"), good, False),  # resent after a crash
        (topic("telemetry"), backlog, False),
        (topic("events"), alarm, False),
        (topic("telemetry", gateway="gw-18"), other_gateway, False),
        (topic("telemetry"), telemetry(STRANGER, 6, []), False),
    )
    code, out, err = await finish(proc)
    lines = out.splitlines()
    assert "old-town/gw-17 #1 lamppost-03.power = 41.5 W" in out
    assert "old-town/gw-17 #1 lamppost-03.lamp_on = on" in out
    assert f"REJECTED {topic('telemetry')}: bad-signature — signature does not verify" in out
    assert "9999" not in out  # the tampered reading is never shown
    assert "DUPLICATE old-town/gw-17 telemetry #1: seq 1 already delivered; dropped" in out
    assert "#4 (historical) meter-1.energy = 1234 Wh [clock-unsynced]" in out
    assert "GAP old-town/gw-17: missing #2..#3 (2) so far" in out
    assert 'event lamppost.lamp_failure from lamppost-03 alarm raised {"lamp":2}' in out
    assert "REJECTED cityedge/v2/old-town/gw-18/telemetry: wrong-gateway" in out
    assert f"unknown-key — key {STRANGER.key_id} is not trusted here" in out
    assert sum(line.startswith("REJECTED") for line in lines) == 3
    assert code == 1, err  # something was rejected
    assert "3 rejected" in err and "missing gw-17 #2..#3" in err


async def test_watch_json_lines_and_clean_exit(broker: Broker, gw_key: SigningKey) -> None:
    proc = await start_watch(
        "--broker",
        broker.url,
        "--trust",
        gw_key.public_text(),
        "--json",
        "--count",
        "2",
        "--timeout",
        "60",
        "--prefix",
        "cityedge/v2",
    )
    state = seal_object(
        gw_key,
        gateway=GATEWAY,
        site=SITE,
        kind="state",
        seq=0,
        ts=5.0,
        data={"status": "online", "version": "0.1.0"},
    )
    await publish(
        broker.port,
        (topic("state"), state, False),
        (topic("telemetry"), telemetry(gw_key, 8, [Reading("d", "p", 2.5, 7.0)], hist=True), False),
    )
    code, out, err = await finish(proc)
    assert code == 0, err
    records: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    assert records[0]["kind"] == "state" and records[0]["state"]["version"] == "0.1.0"
    assert records[1] | {"entry": None} == {
        "outcome": "accepted",
        "topic": topic("telemetry"),
        "site": SITE,
        "gateway": GATEWAY,
        "kind": "telemetry",
        "seq": 8,
        "ts": 1700000001.0,
        "historical": True,
        "key_id": gw_key.key_id,
        "entry": None,
    }
    assert records[1]["entry"] == {
        "device": "d",
        "point": "p",
        "value": 2.5,
        "ts": 7.0,
        "unit": None,
        "quality": "good",
    }


async def test_watch_exit_3_when_count_not_reached(broker: Broker, gw_key: SigningKey) -> None:
    proc = await start_watch(
        "--broker", broker.url, "--trust", gw_key.public_text(), "--count", "5", "--timeout", "0.5"
    )
    code, _, err = await finish(proc)
    assert code == 3
    assert "no messages" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "127.0.0.1:1883"], "no scheme; write e.g. mqtt://127.0.0.1:1883"),
        (["--broker", "http://x"], "scheme 'http', expected mqtt or mqtts"),
        (["--trust", "ed25519:abcd"], "not a public key"),
        (["--trust", "/nonexistent/gw.pub"], "/nonexistent/gw.pub: no such file"),
        ([], "give at least one gateway key with --trust"),
    ],
)
async def test_watch_bad_arguments_exit_2_with_one_clear_line(
    gw_key: SigningKey, args: list[str], message: str
) -> None:
    if "--trust" not in args and "give at least" not in message:
        args = [*args, "--trust", gw_key.public_text()]
    proc = await asyncio.create_subprocess_exec(
        *cli("central", "watch", *args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, out, err = await finish(proc)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and out == ""


async def test_watch_unreachable_broker_exit_4(gw_key: SigningKey) -> None:
    port = free_port()  # nothing listens there
    proc = await asyncio.create_subprocess_exec(
        *cli(
            "central",
            "watch",
            "--broker",
            f"mqtt://127.0.0.1:{port}",
            "--trust",
            gw_key.public_text(),
            "--timeout",
            "10",
        ),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, _, err = await finish(proc)
    assert code == 4
    assert f"mqtt://127.0.0.1:{port}" in err and "Traceback" not in err


def test_broker_urls() -> None:
    assert parse_broker_url("mqtt://127.0.0.1") == BrokerUrl("127.0.0.1", 1883)
    assert parse_broker_url("mqtts://broker.city.example") == BrokerUrl(
        "broker.city.example", 8883, tls=True
    )
    assert parse_broker_url(" mqtt://ops@[::1]:1884/ ") == BrokerUrl("::1", 1884, username="ops")
    assert str(BrokerUrl("::1", 1884, username="ops")) == "mqtt://ops@[::1]:1884"
    for bad, why in [
        ("", "no scheme"),
        ("localhost:1883", "no scheme"),
        ("tcp://x", "expected mqtt or mqtts"),
        ("mqtt://", "no host"),
        ("mqtt://host:99999", "out of range"),
        ("mqtt://host:0", "1-65535"),
        ("mqtt://host:abc", "Port could not be cast"),
        ("mqtt://u:secret@host", "CITYEDGE_MQTT_PASSWORD"),
        ("mqtt://u:secret@host:x", "Port could not be cast"),
        ("mqtt://host/topic", "unexpected path"),
        ("mqtt://host?x=1", "unexpected path"),
    ]:
        with pytest.raises(BrokerUrlError, match=why) as err:
            parse_broker_url(bad)
        assert repr(bad.replace(":secret@", ":***@")) in str(err.value)
        assert "secret" not in str(err.value)


async def test_watch_api_hands_every_verdict_over_until_stopped(
    broker: Broker, gw_key: SigningKey
) -> None:
    verdicts: list[Verdict] = []
    stop, ready = asyncio.Event(), asyncio.Event()

    async def keep(verdict: Verdict) -> None:
        verdicts.append(verdict)
        if len(verdicts) == 3:
            stop.set()

    task = asyncio.create_task(
        watch(broker.url, {gw_key.key_id: gw_key.public_key}, keep, stop=stop, on_ready=ready.set)
    )
    await asyncio.wait_for(ready.wait(), 20)
    await publish(
        broker.port,
        (topic("telemetry"), telemetry(gw_key, 1, [Reading("d", "p", 1, 1.0)]), False),
        (topic("telemetry"), telemetry(gw_key, 3, [Reading("d", "p", 3, 3.0)]), False),
        (topic("telemetry"), telemetry(gw_key, 3, [Reading("d", "p", 3, 3.0)]), False),
    )
    await asyncio.wait_for(task, 20)
    assert [v.outcome for v in verdicts] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DUPLICATE]
    assert verdicts[1].gap == (2, 2)


async def test_watch_api_reports_an_unreachable_broker(gw_key: SigningKey) -> None:
    with pytest.raises(BrokerError, match=r"127\.0\.0\.1"):
        await watch(f"mqtt://127.0.0.1:{free_port()}", {}, lambda v: None, connect_timeout=5)
