"""The outbox against real SQLite files: acceptance, sealing, order, bounds, faults."""

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
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.gateway.outbox import Entry, Outbox, Sealed, stored_messages
from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.opening import open_message
from cityedge.protocol.readings import decode_block
from cityedge.protocol.sealing import message_sealer
from cityedge.sdk.model import Reading

ROOT = Path(__file__).resolve().parents[1]
KEY = SigningKey.from_seed(bytes(range(32)))


def events(kind: str, data: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb({"kind": kind, "data": data}))


def open_box(path: Path, **kw: Any) -> Outbox:
    # Messages of at most 10 entries, so that a few dozen entries make several.
    return Outbox.open(
        path, seal=message_sealer(KEY, gateway="gw-test", site="test"),
        max_bytes=kw.pop("max_bytes", 1 << 30), max_age=kw.pop("max_age", 1e9),
        event_encoder=events, chunk_entries=kw.pop("chunk_entries", 10), **kw,
    )  # fmt: skip


def entry(text: str) -> bytes:
    return bytes(msgpack.packb(text))


def reading(text: str, ts: float | None = None) -> bytes:
    """A telemetry entry that names itself: its point is `text` (`carried` gives it back)."""
    return reading_entry(Reading("dev", text, 0, time.time() if ts is None else ts))


def tele(i: int, ts: float | None = None) -> Entry:
    ts = time.time() if ts is None else ts
    return Entry("telemetry", 1, ts, reading(f"t{i:06d}", ts))


def alarm(i: int) -> Entry:
    return Entry("event", 3, time.time(), entry(f"a{i:06d}"))


def body(message: Sealed | bytes) -> dict[str, Any]:
    payload = message.payload if isinstance(message, Sealed) else message
    decoded: dict[str, Any] = msgpack.unpackb(msgpack.unpackb(payload)["body"])
    return decoded


def carried(messages: list[Sealed] | list[bytes]) -> list[Any]:
    """The entries of `messages`: events and results as stored, readings by point name."""
    out: list[Any] = []
    for m in messages:
        fields = body(m)
        if fields["kind"] == "telemetry":
            out += [r.point for r in decode_block(fields["data"])]
        else:
            out += fields["data"]
    return out


def drain(box: Outbox, *, live_after: int = 0, backlog: bool = False) -> list[Sealed]:
    out = []
    while (message := box.next_message(live_after=live_after, backlog=backlog)) is not None:
        out.append(message)
    return out


def test_entries_are_sealed_at_commit_and_survive_reopen(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    box.add([tele(i) for i in range(5)])
    assert box.pending == 5
    assert box.commit() == 5
    box.close()
    box = open_box(tmp_path / "o.db")
    [message] = drain(box)
    assert carried([message]) == [f"t{i:06d}" for i in range(5)]
    fields = body(message)
    assert (fields["gw"], fields["kind"], fields["seq"], fields["hist"]) == (
        "gw-test", "telemetry", 1, True,  # sealed with no uplink up: historical
    )  # fmt: skip


def test_a_stored_message_verifies_at_the_command_post(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    box.online = True
    reading = Reading("lamppost-001", "power", 61.5, 1.7e9, "W")
    box.add([Entry("telemetry", 1, reading.ts, reading_entry(reading))])
    box.commit()
    [sealed] = drain(box)
    message = open_message(sealed.payload, {KEY.key_id: KEY.public_key})
    assert message.readings == [reading]
    assert (message.seq, message.historical) == (1, False)


def test_alarms_go_before_telemetry_and_messages_keep_one_kind(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    result = Entry("result", 3, time.time(), entry("r1"))
    box.add([tele(1), tele(2), alarm(1), result, tele(3)])
    box.commit()
    messages = drain(box)
    assert [(m.kind, m.priority) for m in messages] == [
        ("event", 3), ("result", 3), ("telemetry", 1),
    ]  # fmt: skip
    assert carried(messages[2:]) == ["t000001", "t000002", "t000003"]


def test_live_and_backlog_split_at_the_sequence_the_link_came_up_at(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    box.add([tele(i) for i in range(3)])
    box.commit()
    mark = box.last_seq()
    box.online = True
    box.add([tele(i) for i in range(3, 5)])
    box.commit()
    live = drain(box, live_after=mark, backlog=False)
    backlog = drain(box, live_after=mark, backlog=True)
    assert carried(live) == ["t000003", "t000004"]
    assert carried(backlog) == ["t000000", "t000001", "t000002"]
    assert [m.historical for m in live + backlog] == [False, True]


def test_sequence_numbers_never_go_back_and_unacked_are_resent_unchanged(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db")
    box.add([tele(i) for i in range(25)])
    box.commit()
    first = drain(box)
    assert [m.seq for m in first] == [1, 2, 3]
    box.ack(first[:1])
    box.close()
    box = open_box(tmp_path / "o.db")
    again = drain(box)
    assert again == first[1:]  # same numbers, same bytes
    box.release()  # a new session: not acknowledged, so handed out again
    assert drain(box) == first[1:]
    box.add([tele(99)])
    box.commit()
    [new] = drain(box, live_after=3)
    assert new.seq == 4
    box.ack([*first[1:], new])
    box.commit()
    assert drain(box) == [] and box.stats().bytes == 0 and box.stats().rows == {}


def test_a_read_ahead_of_acknowledged_messages_does_not_skip_the_rest(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", chunk_entries=1)
    box.add([tele(i) for i in range(70)])
    box.commit()
    first = [box.next_message(live_after=0, backlog=False) for _ in range(64)]
    box.ack([m for m in first if m is not None])  # fewer than 256: not deleted yet
    box.release()  # reconnect: the next read-ahead holds acknowledged messages only
    assert [m.seq for m in drain(box)] == list(range(65, 71))


def test_byte_bound_evicts_oldest_telemetry_first_and_says_so(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", max_bytes=64 * 1024)
    box.add([alarm(i) for i in range(10)])
    start = time.time() - 1000
    box.add([Entry("telemetry", 1, start + i * 0.1, reading(os.urandom(50).hex(), start + i * 0.1))
             for i in range(2000)])  # fmt: skip
    box.commit()
    stats = box.stats()
    assert stats.bytes <= 64 * 1024
    assert stats.rows[3] == 10  # alarms kept
    assert stats.evicted["telemetry"] > 0
    box.commit()  # the eviction event is committed with the next transaction
    evicted = [e for e in carried(drain(box)) if isinstance(e, dict)]
    assert evicted and evicted[0]["kind"] == "outbox.evicted"
    data = evicted[0]["data"]
    assert data["counts"]["telemetry"] == stats.evicted["telemetry"]
    assert data["first_ts"] == start  # the oldest went first
    assert data["reason"] == "max-bytes"
    assert data["first_seq"] == 2  # message 1 holds the alarms; the gap is named
    assert data["last_seq"] >= data["first_seq"]


def test_max_age_evicts_with_an_event(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", max_age=60)
    box.add([tele(1, ts=time.time() - 3600), tele(2)])
    box.commit()
    assert box.stats().evicted == {"telemetry": 1}


def test_messages_on_their_way_are_never_evicted(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", max_bytes=1 << 30)
    box.add([tele(i) for i in range(30)])
    box.commit()
    on_the_way = box.next_message(live_after=0, backlog=False)
    assert on_the_way is not None
    box.max_bytes = 1  # everything must go now, except what the broker may already have
    box.add([tele(99)])
    box.commit()
    box.ack([on_the_way])
    assert box.stats().evicted == {"telemetry": 21}
    assert drain(box) == []  # evicted messages are not sent: the event says they went


def test_corrupt_store_is_set_aside_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    box = open_box(path)
    assert box.set_aside is not None and box.set_aside.exists()  # kept, not deleted
    [message] = drain(box)
    assert carried([message])[0]["kind"] == "outbox.corrupt"


def test_full_disk_keeps_running_evicts_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = open_box(path)
    box._db.execute("PRAGMA max_page_count = 40")  # a tiny disk: real SQLITE_FULL errors
    for round_ in range(30):
        box.add(
            [Entry("telemetry", 1, time.time(), reading(os.urandom(100).hex())) for _ in range(50)]
        )
        box.add([alarm(round_)])
        box.commit()
    stats = box.stats()
    assert stats.disk_full or stats.evicted.get("telemetry", 0) > 0
    assert stats.rows.get(3, 0) + stats.pending > 0  # alarms survive
    box._db.execute("PRAGMA max_page_count = 1000000")  # space returns
    box.add([tele(1)])
    box.commit()
    assert not box.stats().disk_full
    kinds = {e["kind"] for e in carried(drain(box)) if isinstance(e, dict)}
    assert "outbox.disk_full" in kinds
    seqs = [seq for seq, *_ in stored_messages(box._db)]
    assert seqs == sorted(set(seqs))  # failed transactions spent no number twice


CHILD = """
import sys, time
from pathlib import Path
from cityedge.protocol.entries import reading_entry
from cityedge.sdk.model import Reading
from cityedge.protocol.sealing import message_sealer
from cityedge.protocol.keys import SigningKey
from cityedge.gateway.outbox import Outbox, Entry
seal = message_sealer(SigningKey.generate(), gateway="gw-test", site="test")
box = Outbox.open(Path(sys.argv[1]), seal=seal, max_bytes=1 << 30, max_age=1e9)
box.online = sys.argv[3] == "online"
i = int(sys.argv[2])
while True:
    box.add([Entry("telemetry", 1, time.time(), reading_entry(Reading("d", str(i + k), i + k,
                                                                      time.time())))
             for k in range(50)])
    box.commit()
    print(i + 49, flush=True)   # committed: accepted
    i += 50
    box.next_message(live_after=0, backlog=True)   # handed out, never acked: must stay
"""


def test_kill9_at_random_moments_loses_no_committed_entry(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    accepted: set[int] = set()
    next_i, last_seq = 0, 0
    for round_ in range(12):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), str(next_i),
             "online" if round_ % 2 else "offline"],
            stdout=subprocess.PIPE, cwd=ROOT, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        for _ in range(3 + round_ % 5):
            line = child.stdout.readline()
            if line:
                upto = int(line)
                accepted |= set(range(next_i, upto + 1))
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
    stored = {int(e) for e in carried([payload for *_, payload in stored_messages(db)])}
    db.close()
    assert len(accepted) > 500
    assert accepted - stored == set()  # every accepted entry is in a message still to send


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["add", "alarm", "commit", "send", "ack", "reconnect", "reopen"]),
        max_size=40,
    )
)
def test_operation_sequences_keep_the_invariants(tmp_path_factory: Any, ops: list[str]) -> None:
    path = tmp_path_factory.mktemp("ops") / "o.db"
    box = open_box(path)
    committed: set[str] = set()
    buffered: list[str] = []
    delivered: set[str] = set()
    on_the_way: dict[int, Sealed] = {}
    last_seq, counter = 0, 0
    for op in ops:
        if op in ("add", "alarm"):
            counter += 1
            new = tele(counter) if op == "add" else alarm(counter)
            box.add([new])
            decoded = msgpack.unpackb(new.body)
            buffered.append(decoded[1] if new.kind == "telemetry" else decoded)
        elif op == "commit":
            box.commit()
            committed |= set(buffered)
            buffered = []
            assert box.last_seq() >= last_seq
            last_seq = box.last_seq()
        elif op == "send":
            message = box.next_message(live_after=0, backlog=False)
            if message is not None:
                assert message.seq not in on_the_way  # never handed out twice per session
                on_the_way[message.seq] = message
        elif op == "ack" and on_the_way:
            message = on_the_way.pop(min(on_the_way))
            delivered |= set(carried([message]))
            box.ack([message])
        elif op == "reconnect":
            box.release()
            on_the_way.clear()
        elif op == "reopen":
            box.close()  # close commits the buffer
            committed |= set(buffered)
            buffered = []
            box = open_box(path)
            on_the_way.clear()
            assert box.last_seq() >= last_seq
            last_seq = box.last_seq()
    box.commit()
    committed |= set(buffered)
    box.release()
    left = set(carried(drain(box)))
    assert committed <= left | delivered
    assert not (left & delivered)  # an acknowledged message is never sent again
    box.close()


def test_a_window_is_cut_into_messages_at_the_limits(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", chunk_entries=500, chunk_bytes=11500)
    box.add([tele(i) for i in range(1200)])  # 23 bytes each: 500 entries = 11,500 bytes
    box.add([Entry("telemetry", 1, time.time(), reading("x" * 8000)) for _ in range(3)])
    box.commit()
    messages = drain(box)
    assert [m.entry_count for m in messages] == [500, 500, 200, 1, 1, 1]
    assert [m.seq for m in messages] == [1, 2, 3, 4, 5, 6]
    assert carried(messages[:3]) == [f"t{i:06d}" for i in range(1200)]


def test_entries_far_apart_in_time_get_their_own_messages(tmp_path: Path) -> None:
    box = open_box(tmp_path / "o.db", chunk_entries=500)
    now = time.time()
    box.add([tele(1, now - 7200), tele(2, now - 7190), tele(3, now), tele(4, now + 1)])
    box.commit()
    spans = box._db.execute("SELECT first_ts, last_ts FROM messages ORDER BY seq").fetchall()
    assert spans == [(now - 7200, now - 7190), (now, now + 1)]


def test_a_store_in_the_first_layout_is_sealed_in_order(tmp_path: Path) -> None:
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
        """
    )
    old = Sealed(41, "telemetry", 1, b"", 1, False)
    db.execute("INSERT INTO messages VALUES (41, 'telemetry', 1, ?, 1)", (b"sent-before",))
    db.executemany(
        "INSERT INTO rows (kind, priority, ts, body) VALUES (?, ?, ?, ?)",
        [("telemetry", 1, 1e9 + i, reading(f"t{i:06d}", 1e9 + i)) for i in range(30)]
        + [("event", 3, 2e9, entry("a"))],
    )
    db.commit()
    db.close()
    box = open_box(path)
    assert box.last_seq() == 45  # 41, then 3 telemetry messages of 10 and one alarm
    assert box.stats().rows == {1: 31, 3: 1}
    messages = drain(box)
    assert messages[0].seq == 45 and carried(messages[:1]) == ["a"]
    assert messages[1].payload == b"sent-before"  # kept as it was: same bytes again
    assert carried(messages[2:]) == [f"t{i:06d}" for i in range(30)]
    assert all(m.historical for m in messages[2:])
    box.ack([old])
    box.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'rows'").fetchone() is None
    db.close()


def test_a_store_in_the_chunk_layout_is_sealed_in_order(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
            priority INTEGER NOT NULL, first_ts REAL NOT NULL, last_ts REAL NOT NULL,
            count INTEGER NOT NULL, sizes BLOB NOT NULL, body BLOB NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('seq', 7);
        """
    )
    chunk = b"".join(reading(f"t{i:06d}", 1e9 + i) for i in range(3))
    db.execute(
        "INSERT INTO chunks (kind, priority, first_ts, last_ts, count, sizes, body) "
        "VALUES ('telemetry', 1, 1e9, 1e9 + 2, 3, x'', ?)",
        (chunk,),
    )
    db.commit()
    db.close()
    box = open_box(path)
    [message] = drain(box)
    assert (message.seq, message.entry_count, carried([message])) == (
        8, 3, ["t000000", "t000001", "t000002"],
    )  # fmt: skip
    box.close()
