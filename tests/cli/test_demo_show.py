"""`cityedge demo` as a show: a view of the street, not a log; gaps only when real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cityedge.central.verifier import Gap
from cityedge.street.show import StreetView
from tests.integration.test_runtime import demo_config
from tests.support.agent_process import ROOT, agent_env


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
