"""A full disk, for real: the outbox on a tmpfs of 3 MiB the test mounts itself.

Why a real filesystem and not SQLite's `max_page_count`: a page budget refuses
new pages but lets the WAL grow, so the DELETE that evicts always has room. On a
full filesystem that DELETE needs room too (it appends its pages to the WAL) and
fails with "disk full" itself: the failure issue 19 found. A tmpfs mount needs
root (the test skips otherwise, saying so); it is small, private to the test and
unmounted afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityedge.gateway.outbox import Entry
from tests.test_outbox import alarm, carried, drain, open_box, reading


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def window(n: int) -> list[Entry]:
    return [Entry("telemetry", 1, time.time(), reading(os.urandom(100).hex())) for _ in range(n)]


def test_a_full_filesystem_evicts_alarms_at_once_and_keeps_accepting(small_fs: Path) -> None:
    box = open_box(small_fs / "o.db", max_bytes=64 << 20)  # far above what fits: disk decides
    assert box._reserve.held  # 1 MiB held back for the day the disk fills
    full_at = None
    after_full = 0
    for round_ in range(1000):  # ~10 KB a round: full after ~200 rounds
        box.add(window(50))
        if round_ % 20 == 0:
            box.add([alarm(round_)])
        committed = box.commit()  # never raises: the pipeline's commit task goes on
        if full_at is None and box.stats().disk_full:
            full_at = round_
            assert committed > 0  # the very commit that hit the full disk got in
        elif full_at is not None:
            after_full += committed
            if round_ - full_at >= 200:
                break
    assert full_at is not None, "the filesystem never filled"
    assert after_full >= 150 * 50  # live data kept flowing on the full disk
    assert box.pending < 1000  # not piling up in memory either
    events = [e for e in carried(drain(box)) if isinstance(e, dict)]
    kinds = [e["kind"] for e in events]
    assert kinds.count("outbox.disk_full") >= 1
    assert events[kinds.index("outbox.disk_full")]["data"] == {"active": True}
    evicted = [e["data"] for e in events if e["kind"] == "outbox.evicted"]
    assert evicted and all(e["reason"] == "disk-full" for e in evicted)
    assert all(e["counts"].keys() == {"telemetry"} for e in evicted)  # alarms kept
    assert all(e["first_seq"] <= e["last_seq"] for e in evicted)  # the gap is named
