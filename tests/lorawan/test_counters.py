"""Frame counters on disk (drivers/lorawan/fcnt.py): replays refused across restarts and
kills, gaps counted, the 16-bit roll-over, and a damaged file set aside."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cityedge.drivers.lorawan.fcnt import FrameCounters
from cityedge.drivers.lorawan.frames import build_uplink, parse_uplink, verify_mic

BIN, NOISE = 0x26011BDA, 0x26011BDB
NWK, APP = bytes(range(16)), bytes(range(16, 32))


def test_replays_are_refused_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "lorawan-lora.db"  # the state dir is created
    counters = FrameCounters(path)
    for fcnt in (1, 2, 3):
        verdict = counters.check(BIN, fcnt)
        assert not verdict.replay
        counters.accept(BIN, verdict.fcnt32)
    counters.close()

    reopened = FrameCounters(path)
    assert reopened.set_aside is None and reopened.last(BIN) == 3
    assert [reopened.check(BIN, f).replay for f in (1, 2, 3, 4)] == [True, True, True, False]
    assert not reopened.check(NOISE, 1).replay  # each DevAddr has its own counter
    reopened.close()


def test_an_accepted_counter_survives_the_agent_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "lorawan-lora.db"
    child = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from cityedge.drivers.lorawan.fcnt import FrameCounters
        counters = FrameCounters(Path({str(path)!r}))
        counters.accept({BIN}, 41)
        counters.accept({BIN}, 42)
        print("accepted", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit
    """)
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", child], cwd=repo, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == -signal.SIGKILL and "accepted" in done.stdout, done.stderr
    counters = FrameCounters(path)
    assert counters.last(BIN) == 42
    assert counters.check(BIN, 42).replay and not counters.check(BIN, 43).replay
    counters.close()


def test_gaps_are_frames_lost(tmp_path: Path) -> None:
    counters = FrameCounters(tmp_path / "fcnt.db")
    first = counters.check(BIN, 100)
    assert (first.fcnt32, first.replay, first.lost) == (100, False, 0)  # nothing known before
    counters.accept(BIN, 100)
    assert counters.check(BIN, 101).lost == 0
    gap = counters.check(BIN, 110)
    assert (gap.fcnt32, gap.replay, gap.lost) == (110, False, 9)
    counters.accept(BIN, 110)
    counters.close()
    again = FrameCounters(tmp_path / "fcnt.db")
    assert again.check(BIN, 111).lost == 0 and again.check(BIN, 115).lost == 4
    again.close()


def test_roll_over_of_the_low_half_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "fcnt.db"
    counters = FrameCounters(path)
    counters.accept(BIN, 0xFFFE)
    counters.close()

    counters = FrameCounters(path)
    frame = parse_uplink(build_uplink(BIN, 0x1_0001, 2, b"\x10", NWK, APP))
    verdict = counters.check(BIN, frame.fcnt16)
    assert (verdict.fcnt32, verdict.replay, verdict.lost) == (0x1_0001, False, 2)
    assert verify_mic(NWK, frame, verdict.fcnt32)
    counters.accept(BIN, verdict.fcnt32)
    counters.close()

    counters = FrameCounters(path)
    assert counters.last(BIN) == 0x1_0001
    assert counters.check(BIN, 0x0001).replay  # the same frame again
    # A frame sent before the roll-over (FCnt 0xFFFF) now reads as 0x1FFFF; its MIC was
    # made with 0x0000FFFF, so it fails there instead of moving the window.
    old = parse_uplink(build_uplink(BIN, 0xFFFF, 2, b"\x10", NWK, APP))
    late = counters.check(BIN, old.fcnt16)
    assert late.fcnt32 == 0x1_FFFF and not verify_mic(NWK, old, late.fcnt32)
    counters.close()


def test_a_spent_32_bit_counter_refuses_everything(tmp_path: Path) -> None:
    counters = FrameCounters(tmp_path / "fcnt.db")
    counters.accept(BIN, 0xFFFF_FFFF)
    assert all(counters.check(BIN, f).replay for f in (0, 1, 0x3FFF, 0xFFFF))
    counters.close()


@pytest.mark.parametrize("damage", ["garbage", "header", "page", "truncated"])
def test_a_damaged_file_is_set_aside_and_a_fresh_one_opened(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "fcnt.db"
    counters = FrameCounters(path)
    for addr in range(500):
        counters.accept(addr, addr + 1)
    counters.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(path.read_bytes())
    if damage == "garbage":
        raw = bytearray(b"not a database " * 200)
    elif damage == "header":
        raw[:16] = b"X" * 16
    elif damage == "page":
        raw[4096:8192] = bytes(range(256)) * 16
    else:
        raw = raw[: len(raw) // 2 + 100]
    original = bytes(raw)
    path.write_bytes(original)

    fresh = FrameCounters(path)
    assert fresh.set_aside is not None and fresh.set_aside.name.startswith("fcnt.db.corrupt-")
    assert fresh.set_aside.read_bytes() == original  # kept for a post-mortem, untouched
    assert fresh.last(7) is None  # a fresh start: the notice is the caller's to report
    fresh.accept(7, 9)
    fresh.close()
    assert FrameCounters(path).last(7) == 9


def test_a_locked_file_is_not_mistaken_for_a_corrupt_one(tmp_path: Path) -> None:
    path = tmp_path / "fcnt.db"
    counters = FrameCounters(path)
    counters.accept(BIN, 100)
    counters.close()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        try:
            opened = FrameCounters(path)
        except sqlite3.OperationalError:
            return  # an error is acceptable; losing the counters is not
        assert opened.set_aside is None and opened.last(BIN) == 100
    finally:
        holder.close()
