"""The outbox against real SQLite files: acceptance, order, sealing, bounds, faults."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.outbox import Batch, Entry, Outbox, pack_sizes, split_entries, stored_chunks

ROOT = Path(__file__).resolve().parents[1]


def events(kind: str, data: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb({"kind": kind, "data": data}))


def open_box(path: Path, **kw: Any) -> Outbox:
    # Chunks of 10 entries, the batch size `drain` asks for, as the runtime matches
    # chunk_entries to the uplink's batch_max_readings.
    return Outbox.open(
        path, max_bytes=kw.pop("max_bytes", 1 << 30), max_age=kw.pop("max_age", 1e9),
        event_encoder=events, chunk_entries=kw.pop("chunk_entries", 10), **kw,
    )  # fmt: skip


def tele(i: int, ts: float | None = None) -> Entry:
    return Entry("telemetry", 1, time.time() if ts is None else ts, b"t%06d" % i)


def alarm(i: int) -> Entry:
    return Entry("event", 3, time.time(), b"a%06d" % i)


def drain(box: Outbox, *, live_after: int, backlog: bool) -> list[Batch]:
    out = []
    while (
        batch := box.next_batch(live_after=live_after, backlog=backlog, max_entries=10)
    ) is not None:
        out.append(batch)
    return out


def test_rows_are_accepted_at_commit_and_survive_reopen(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    box.add([tele(i) for i in range(5)])
    assert box.pending == 5
    assert box.commit() == 5
    box.close()
    box = open_box(tmp_path / "o.db")
    batch = box.next_batch(live_after=0, backlog=False, max_entries=100)
    assert batch is not None and batch.bodies == [b"t%06d" % i for i in range(5)]


def test_alarms_go_before_telemetry_and_batches_keep_one_kind(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    box.add([tele(1), tele(2), alarm(1), Entry("result", 3, time.time(), b"r1"), tele(3)])
    box.commit()
    batches = drain(box, live_after=0, backlog=False)
    assert [b.kind for b in batches] == ["event", "result", "telemetry"]
    assert [b.priority for b in batches] == [3, 3, 1]


def test_live_and_backlog_split_at_the_watermark(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    box.add([tele(i) for i in range(3)])
    box.commit()
    mark = box.watermark()
    box.add([tele(i) for i in range(3, 5)])
    box.commit()
    live = drain(box, live_after=mark, backlog=False)
    backlog = drain(box, live_after=mark, backlog=True)
    assert [x for b in live for x in b.bodies] == [b"t000003", b"t000004"]
    assert [x for b in backlog for x in b.bodies] == [b"t000000", b"t000001", b"t000002"]


def test_seal_numbers_never_go_back_and_unacked_are_kept(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    box.add([tele(i) for i in range(25)])
    box.commit()
    sealed = box.seal(drain(box, live_after=0, backlog=False), lambda b, seq: b"m%d" % seq)
    assert [s.seq for s in sealed] == [1, 2, 3]
    box.ack([1])
    box.close()
    box = open_box(tmp_path / "o.db")
    assert [s.seq for s in box.unacked()] == [2, 3]
    assert (
        box.next_batch(live_after=0, backlog=False, max_entries=10) is None
    )  # rows left with their message
    box.add([tele(99)])
    box.commit()
    again = box.seal(drain(box, live_after=0, backlog=False), lambda b, seq: b"m%d" % seq)
    assert again[0].seq == 4
    box.ack([2, 3, 4])
    box.commit()
    assert box.unacked() == []
    assert box.stats().bytes == 0


def test_byte_bound_evicts_oldest_telemetry_first_and_says_so(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", max_bytes=64 * 1024)
    box.add([alarm(i) for i in range(10)])
    start = time.time() - 1000
    box.add([Entry("telemetry", 1, start + i * 0.1, bytes(100)) for i in range(2000)])
    box.commit()
    stats = box.stats()
    assert stats.bytes <= 64 * 1024
    assert stats.rows[3] == 10  # alarms kept
    assert stats.evicted["telemetry"] > 0
    box.commit()  # the eviction event is committed with the next transaction
    bodies = [b for batch in drain(box, live_after=0, backlog=False) for b in batch.bodies]
    evicted = [msgpack.unpackb(b) for b in bodies if b"outbox.evicted" in b]
    assert evicted and evicted[0]["data"]["counts"]["telemetry"] == stats.evicted["telemetry"]
    assert evicted[0]["data"]["first_ts"] == start  # the oldest went first
    assert evicted[0]["data"]["reason"] == "max-bytes"


def test_max_age_evicts_with_an_event(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", max_age=60)
    box.add([tele(1, ts=time.time() - 3600), tele(2)])
    box.commit()
    assert box.stats().evicted == {"telemetry": 1}


def test_corrupt_store_is_set_aside_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    box = open_box(path)
    assert box.set_aside is not None and box.set_aside.exists()  # kept, not deleted
    batch = box.next_batch(live_after=0, backlog=False, max_entries=10)
    assert batch is not None and b"outbox.corrupt" in batch.bodies[0]


def test_full_disk_keeps_running_evicts_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = open_box(path)
    box._db.execute("PRAGMA max_page_count = 40")  # a tiny disk: real SQLITE_FULL errors
    for round_ in range(30):
        box.add([Entry("telemetry", 1, time.time(), os.urandom(200)) for _ in range(50)])
        box.add([alarm(round_)])
        box.commit()
    stats = box.stats()
    assert stats.disk_full or stats.evicted.get("telemetry", 0) > 0
    assert stats.rows.get(3, 0) + stats.pending > 0  # alarms survive
    box._db.execute("PRAGMA max_page_count = 1000000")  # space returns
    box.add([tele(1)])
    box.commit()
    assert not box.stats().disk_full
    kinds = b"".join(b for batch in drain(box, live_after=0, backlog=False) for b in batch.bodies)
    assert b"outbox.disk_full" in kinds


CHILD = """
import sys, time
from pathlib import Path
from agent.outbox import Outbox, Entry
box = Outbox.open(Path(sys.argv[1]), max_bytes=1 << 30, max_age=1e9)
i = int(sys.argv[2])
while True:
    box.add([Entry("telemetry", 1, time.time(), b"%09d" % (i + k)) for k in range(50)])
    box.commit()
    print(i + 49, flush=True)   # committed: accepted
    i += 50
    b = box.next_batch(live_after=0, backlog=True, max_entries=40)
    if b is not None:
        box.seal([b], lambda b, seq: b"".join(b.bodies))   # sealed, never acked: must stay
"""


def test_kill9_at_random_moments_loses_no_committed_row(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    accepted: set[bytes] = set()
    next_i, last_seq = 0, 0
    for round_ in range(12):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), str(next_i)],
            stdout=subprocess.PIPE, cwd=ROOT, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        for _ in range(3 + round_ % 5):
            line = child.stdout.readline()
            if line:
                upto = int(line)
                accepted |= {b"%09d" % k for k in range(next_i, upto + 1)}
                next_i = upto + 1
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
        next_i += 1000  # whatever the child buffered but did not report is not "accepted"
        box = open_box(path)
        assert box.last_seq() >= last_seq
        last_seq = box.last_seq()
        box.close()
    db = sqlite3.connect(path)
    stored = {b for *_, bodies in stored_chunks(db) for b in bodies}
    sealed = b"".join(bytes(p) for (p,) in db.execute("SELECT payload FROM messages"))
    db.close()
    assert len(accepted) > 500
    # Every accepted row is still a row, or inside a sealed message that will be resent.
    lost = {b for b in accepted if b not in stored and b not in sealed}
    assert lost == set()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["add", "alarm", "commit", "seal", "ack", "reopen"]), max_size=40))
def test_operation_sequences_keep_the_invariants(tmp_path_factory: Any, ops: list[str]) -> None:
    path = tmp_path_factory.mktemp("ops") / "o.db"
    box = open_box(path)
    committed: set[bytes] = set()
    buffered: list[bytes] = []
    delivered: set[bytes] = set()
    unacked: dict[int, list[bytes]] = {}
    last_seq, counter = 0, 0
    for op in ops:
        if op in ("add", "alarm"):
            counter += 1
            entry = tele(counter) if op == "add" else alarm(counter)
            box.add([entry])
            buffered.append(entry.body)
        elif op == "commit":
            box.commit()
            committed |= set(buffered)
            buffered = []
        elif op == "seal":
            batch = box.next_batch(live_after=0, backlog=False, max_entries=5)
            if batch:
                for s in box.seal([batch], lambda b, seq: b"".join(b.bodies)):
                    assert s.seq > last_seq
                    last_seq = s.seq
                    unacked[s.seq] = list(batch.bodies)
        elif op == "ack" and unacked:
            seq = min(unacked)
            delivered |= set(unacked.pop(seq))
            box.ack([seq])
        elif op == "reopen":
            box.close()  # close commits the buffer
            committed |= set(buffered)
            buffered = []
            box = open_box(path)
            assert box.last_seq() == last_seq
    box.commit()
    committed |= set(buffered)
    rows = {b for batch in drain(box, live_after=0, backlog=False) for b in batch.bodies}
    in_messages = {b for bodies in unacked.values() for b in bodies}
    assert committed <= rows | in_messages | delivered
    box.close()


def test_a_window_is_stored_as_chunks_of_one_message_each(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", chunk_entries=500, chunk_bytes=4000)
    box.add([tele(i) for i in range(1200)])  # 7 bytes each: 500 entries = 3,500 bytes
    box.add([Entry("telemetry", 1, time.time(), bytes(3000)) for _ in range(3)])
    box.commit()
    batches = []
    db = sqlite3.connect(tmp_path / "o.db")
    assert [len(entries) for *_, entries in stored_chunks(db)] == [500, 500, 200, 1, 1, 1]
    db.close()
    while (
        b := box.next_batch(live_after=0, backlog=False, max_entries=500, max_bytes=4000)
    ) is not None:
        batches.append(b)
    # whole chunks, one per message at the same limits; never split
    assert [b.count for b in batches] == [500, 500, 200, 1, 1, 1]
    assert all(b.chunk_ids[0] == b.chunk_ids[1] for b in batches)
    box.release(batches)
    # with room to spare, a batch takes several (small) chunks of one kind
    big = box.next_batch(live_after=0, backlog=False, max_entries=1000, max_bytes=1 << 20)
    assert big is not None and big.count == 1000 and big.chunk_ids[1] > big.chunk_ids[0]
    assert [x for b in batches[:3] for x in b.bodies] == [b"t%06d" % i for i in range(1200)]
    assert batches[0].entries == b"".join(b"t%06d" % i for i in range(500))


def test_entries_far_apart_in_time_get_their_own_chunks(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", chunk_entries=500)
    now = time.time()
    box.add([tele(1, now - 7200), tele(2, now - 7190), tele(3, now), tele(4, now + 1)])
    box.commit()
    db = sqlite3.connect(tmp_path / "o.db")
    spans = [(first, last) for _, _, _, first, last, _ in stored_chunks(db)]
    db.close()
    assert spans == [(now - 7200, now - 7190), (now, now + 1)]


def test_a_store_written_by_version_0_1_is_migrated_in_order(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE rows (id INTEGER PRIMARY KEY, kind TEXT NOT NULL,
            priority INTEGER NOT NULL, ts REAL NOT NULL, body BLOB NOT NULL);
        CREATE TABLE messages (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,
            priority INTEGER NOT NULL, payload BLOB NOT NULL, count INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('seq', 41);
        INSERT INTO messages VALUES (41, 'telemetry', 1, x'00', 1);
        """
    )
    db.executemany(
        "INSERT INTO rows (kind, priority, ts, body) VALUES (?, ?, ?, ?)",
        [("telemetry", 1, 1e9 + i, b"t%06d" % i) for i in range(30)] + [("event", 3, 2e9, b"a")],
    )
    db.commit()
    db.close()
    box = open_box(path)
    assert box.last_seq() == 41 and [s.seq for s in box.unacked()] == [41]
    assert box.stats().rows == {1: 30, 3: 1}
    batches = drain(box, live_after=0, backlog=False)
    assert [x for b in batches for x in b.bodies] == [b"a"] + [b"t%06d" % i for i in range(30)]
    box.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'rows'").fetchone() is None
    db.close()


def test_chunk_sizes_that_do_not_match_the_body_are_refused() -> None:
    sizes = pack_sizes([3, 4])
    assert split_entries(sizes, b"abcdefg") == [b"abc", b"defg"]
    with pytest.raises(ValueError, match="add up to 7 bytes, body has 6"):
        split_entries(sizes, b"abcdef")
