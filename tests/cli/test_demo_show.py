"""`cityedge demo` as a show: a view of the street, not a log; gaps only when real."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from cityedge.central.verifier import Gap
from cityedge.street.show import StreetView
from tests.support.agent_process import ROOT, agent_env
from tests.support.demo import demo_config


def test_the_demo_shows_the_street_not_a_firehose(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cityedge.cli", "demo", "-c", str(config), "--duration", "12"],
        cwd=ROOT, env=agent_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "Task exception" not in out, out[-3000:]
    for i in range(1, 9):  # every lamppost, its state and its level
        assert re.search(rf"│ lamppost-00{i} +│ up +│ lamp_on (on|off) +dimming \d+ %", out), out
    assert re.search(r"│ cabinet-meter +│ up", out) and re.search(r"│ bin-0042 +│ up", out)
    verified = re.search(r"(\d+) messages verified", out)
    assert verified and int(verified.group(1)) > 0, out
    assert "GAP" not in out  # nothing stayed missing past the grace period
    assert "[clock-unsynced]" not in out  # said once in the header, if at all
    assert out.count("clock not synchronised") <= 1
    assert len(out.splitlines()) < 120  # a view, not 1,347 lines of log
    assert "REJECTED" not in out


def test_a_hole_filled_by_a_late_message_is_no_gap() -> None:
    view = StreetView(gap_grace=10.0)
    late = Gap("gw", 7, 7)
    assert view.real_gaps([late], now=100.0) == []  # opened
    assert view.real_gaps([late], now=105.0) == []  # still within the grace
    assert view.real_gaps([], now=105.1) == []  # message #7 came (late): filled
    assert view.real_gaps([], now=200.0) == []
    real = Gap("gw", 20, 22)
    assert view.real_gaps([real], now=300.0) == []
    assert view.real_gaps([real], now=309.9) == []
    assert view.real_gaps([real], now=310.0) == [real]  # open for the whole grace: shown


def test_devices_status_and_read_agree_on_the_demo_street(tmp_path: Path) -> None:
    """With LoRaWAN, the packet forwarders have health but are no devices: `devices`
    lists them apart, `status` does not count them, `read` knows every device listed."""
    from tests.cli.conftest import piped
    from tests.technician.site import wait_until

    config = demo_config(tmp_path)
    with (tmp_path / "demo.log").open("wb") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "cityedge.cli", "demo", "-c", str(config), "--duration", "90"],
            cwd=ROOT, env=agent_env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def listed() -> list[dict[str, object]]:
            done = piped("devices", "--json", "-c", str(config))
            return json.loads(done.stdout) if done.returncode == 0 else []

        def heard() -> bool:
            rows = listed()
            return any(not r["type"] for r in rows) and any(r["device"] == "bin-0042"
                                                           for r in rows)  # fmt: skip

        assert wait_until(heard, 60), (tmp_path / "demo.log").read_text()[-3000:]
        rows = listed()
        devices = sorted(str(r["device"]) for r in rows if r["type"])
        links = sorted(str(r["device"]) for r in rows if not r["type"])
        assert all(name.startswith("forwarder-") for name in links), links
        table = piped("devices", "-c", str(config)).stdout
        assert table.startswith(f"# {len(devices)} devices\n"), table
        assert "# Links" in table
        status = json.loads(piped("status", "--json", "-c", str(config)).stdout)
        assert status["devices"]["total"] == len(devices)
        for name in ("lamppost-001", "cabinet-meter", "bin-0042"):
            assert name in devices
            assert piped("read", name, "--json", "-c", str(config)).returncode == 0, name
        refused = piped("read", links[0], "-c", str(config))
        assert refused.returncode == 1 and "unknown device" in refused.stderr
    finally:
        demo.terminate()
        demo.wait(60)


async def test_watch_reports_a_gap_only_once_it_outlives_the_grace(tmp_path: Path) -> None:
    """`central watch --gap-grace` (what `demo --log` runs): a message overtaken in flight
    is no gap; a hole that stays open is reported, once."""
    from cityedge.protocol.keys import SigningKey
    from cityedge.sdk.model import Reading
    from cityedge.street.broker import Broker
    from tests.protocol.street import GATEWAY, publish, topic
    from tests.protocol.test_console import finish, start_watch, telemetry

    key = SigningKey.from_seed(bytes([7]) * 32)
    with Broker(workdir=tmp_path / "broker") as broker:
        proc = await start_watch("--broker", broker.url, "--trust",
                                 f"{GATEWAY}={key.public_text()}", "--timeout", "6",
                                 "--gap-grace", "2")  # fmt: skip
        readings = [Reading("lamppost-01", "dimming", 40, 1700000000.0)]
        sent = [(topic("telemetry"), telemetry(key, seq, readings), False) for seq in (1, 3, 2, 5)]
        await publish(broker.port, *sent)  # #2 arrives after #3: late, not lost; #4 is lost
        code, out, err = await finish(proc)
    assert code == 0, err
    assert "(late)" in out
    assert "#2..#2" not in out  # filled within the grace: never reported
    gaps = [line for line in out.splitlines() if line.startswith("GAP ")]
    assert gaps == [f"GAP {GATEWAY}: missing #4..#4 (1) for over 2 s"], out


def test_the_demo_redraws_one_view_in_place_on_an_80_column_terminal(tmp_path: Path) -> None:
    """On a terminal (a pty, 80 columns) the view is redrawn where it stands, never wider
    than the screen: the crew sees one street that changes, not a scroll of frames."""
    from rich.cells import cell_len

    from tests.cli.conftest import on_terminal

    code, screen = on_terminal(
        "demo", "-c", str(demo_config(tmp_path)), "--duration", "12", columns=80, timeout=120
    )
    assert code == 0, screen[-3000:]
    assert "Traceback" not in screen, screen[-3000:]
    # rich Live moves the cursor back up over the last frame before drawing the next
    redraws = screen.count("\x1b[1A")
    assert redraws > 0, screen[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen).replace("\r", "")
    frame_lines = [line for line in plain.split("\n") if line[:1] in "┏┃┡│└╭╰"]
    assert frame_lines, plain[-3000:]
    too_wide = [line for line in frame_lines if cell_len(line) > 80]
    assert too_wide == [], too_wide[:3]
    last = plain[plain.rfind("street ") :]  # the final frame, left on the screen
    for i in range(1, 9):
        assert f"lamppost-00{i}" in last, last
    assert re.search(r"(\d+) messages verified", last), last
