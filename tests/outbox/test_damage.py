"""Damaged stores on real files (issue 19): numbering above the high-water mark,
the loss reported with its range, and the command post's verifier accepting what
comes next instead of dropping it as duplicates."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import msgpack

from cityedge.central.verifier import Outcome, Verifier
from cityedge.gateway.outbox import Entry, Outbox, Sealed, stored_messages
from cityedge.protocol.entries import event_entry, reading_entry
from cityedge.protocol.sealing import message_sealer
from cityedge.protocol.topics import DEFAULT_PREFIX, topic_for
from cityedge.sdk.model import Event, Reading, Severity
from tests.test_outbox import KEY, carried, drain, open_box, tele

ROOT = Path(__file__).resolve().parents[2]


def real_event(kind: str, data: dict[str, Any]) -> bytes:
    return event_entry(Event(kind, "outbox", 1.7e9, Severity.ALARM, None, data))


def real_box(path: Path) -> Outbox:
    """Entries and events as the agent encodes them, so the shipped verifier reads them."""
    return Outbox.open(
        path, seal=message_sealer(KEY, gateway="gw-test", site="test"), max_bytes=1 << 30,
        max_age=1e9, event_encoder=real_event, chunk_entries=1,
    )  # fmt: skip


def reading(i: int) -> Entry:
    return Entry("telemetry", 1, 1.7e9 + i, reading_entry(Reading("lamp", "power", i, 1.7e9 + i)))


def verifier() -> Verifier:
    return Verifier({KEY.key_id: KEY.public_key})


def send(post: Verifier, messages: list[Sealed]) -> list[Outcome]:
    topic = partial(topic_for, DEFAULT_PREFIX, "test", "gw-test")
    return [post.verify(topic(m.kind), m.payload).outcome for m in messages]


def alarms(messages: list[Sealed]) -> list[dict[str, Any]]:
    """The `outbox.corrupt` alarms' data, from the test encoding or the real one."""
    found = []
    for e in carried(messages):
        if isinstance(e, dict) and e["kind"] == "outbox.corrupt":
            found.append(e["data"])
        elif isinstance(e, list) and "outbox.corrupt" in e:
            found.append(next(x for x in e if isinstance(x, dict)))
    return found


def test_a_0_byte_store_is_reported_and_numbering_goes_on_above_the_mark(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    post = verifier()
    box = real_box(path)
    box.online = True
    box.add([reading(i) for i in range(5)])
    box.commit()
    delivered = drain(box)
    assert send(post, delivered) == [Outcome.ACCEPTED] * 5
    box.ack(delivered)
    box.online = False
    box.add([reading(i) for i in range(5, 78)])  # 73 buffered messages, then the store is lost
    box.commit()
    box.close()
    path.write_bytes(b"")
    box = real_box(path)
    assert box.set_aside is not None and box.set_aside.exists()  # the 0-byte file, kept
    box.add([reading(100)])
    box.commit()
    out = drain(box)
    [alarm] = alarms(out)
    assert alarm["reason"] == "store-empty"
    assert alarm["counts"] == {"telemetry": 73}  # what the store held, exactly
    assert alarm["held_last_seq"] == 78 and alarm["first_seq"] == 6
    assert min(m.seq for m in out) == alarm["last_seq"] + 1 > 78  # above the mark
    # The command post: new messages are new, the 73 are accounted for, not missing.
    assert send(post, out) == [Outcome.ACCEPTED] * len(out)
    assert post.missing() == []
    assert [(g.first, g.last) for g in post.accounted()] == [(6, alarm["last_seq"])]


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[4])
from pathlib import Path
import msgpack
from tests.test_outbox import open_box, tele
box = open_box(Path(sys.argv[1]), chunk_entries=1)
box.add([tele(i) for i in range(int(sys.argv[2]))])
box.commit()
box.close()          # checkpointed: these are in the main file
box = open_box(Path(sys.argv[1]), chunk_entries=1)
box.add([tele(i) for i in range(1000, 1000 + int(sys.argv[3]))])
box.commit()         # these are in the WAL only
print("committed", box.last_seq(), flush=True)
time.sleep(600)
"""


def crashed_store(tmp_path: Path, checkpointed: int, in_wal: int) -> Path:
    """A store whose last `in_wal` messages sit in the WAL of a process killed -9."""
    path = tmp_path / "o.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(path), str(checkpointed), str(in_wal), str(ROOT)],
        stdout=subprocess.PIPE, cwd=ROOT, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().split() == ["committed", str(checkpointed + in_wal)]
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    child.stdout.close()
    assert path.with_name("o.db-wal").stat().st_size > 0
    return path


def test_a_deleted_wal_after_kill9_is_reported_with_the_range_lost(tmp_path: Path) -> None:
    path = crashed_store(tmp_path, checkpointed=10, in_wal=40)
    path.with_name("o.db-wal").unlink()
    box = open_box(path, chunk_entries=1)
    out = drain(box)
    [alarm] = alarms(out)
    assert alarm["reason"] == "wal-lost"
    assert (alarm["first_seq"], alarm["held_last_seq"]) == (11, 50)
    assert alarm["counts"] == {"telemetry": 40}
    assert [m.seq for m in out if m.kind == "event"] == [alarm["last_seq"] + 1]  # above 50
    survivors = sorted(e for e in carried(out) if isinstance(e, str))
    assert survivors == [f"t{i:06d}" for i in range(10)]  # what was checkpointed goes


def test_damaged_wal_bytes_are_set_aside_and_the_loss_reported(tmp_path: Path) -> None:
    path = crashed_store(tmp_path, checkpointed=10, in_wal=40)
    wal = path.with_name("o.db-wal")
    raw = bytearray(wal.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 8] = bytes(b ^ 0xFF for b in raw[middle : middle + 8])
    wal.write_bytes(bytes(raw))
    box = open_box(path, chunk_entries=1)
    kept = {seq for seq, *_ in stored_messages(box._db)}
    out = drain(box)
    [alarm] = alarms(out)
    assert alarm["reason"] == "wal-lost" and alarm["held_last_seq"] == 50
    assert alarm["first_seq"] == max(kept & set(range(1, 51))) + 1
    assert alarm["counts"] == {"telemetry": 50 - len(kept & set(range(1, 51)))}
    aside = Path(alarm["set_aside"])
    assert aside.read_bytes() == bytes(raw)  # the damaged WAL, as it was found


def test_a_flipped_bit_in_a_stored_message_is_set_aside_never_sent(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = real_box(path)
    modes = [Reading("lamp", "mode", f"m{i:06d}", 1.7e9) for i in range(3)]
    box.add([Entry("telemetry", 1, 1.7e9, reading_entry(r)) for r in modes])
    box.commit()
    box.close()  # checkpointed into the main file
    raw = bytearray(path.read_bytes())
    at = raw.index(msgpack.packb("m000001"))
    raw[at + 3] ^= 0x01  # one bit of the second message's entry
    path.write_bytes(bytes(raw))
    box = real_box(path)
    sent = drain(box)
    assert [m.seq for m in sent] == [1, 3]
    post = verifier()
    assert send(post, sent) == [Outcome.ACCEPTED] * 2  # nothing bad went out
    box.commit()  # the alarm
    [alarm] = alarms(drain(box))
    assert (alarm["reason"], alarm["first_seq"], alarm["last_seq"]) == ("bad-row", 2, 2)
    assert alarm["counts"] == {"telemetry": 1}
    box.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT seq FROM damaged").fetchall() == [(2,)]  # kept for a look
    db.close()


def test_the_tally_never_claims_more_than_a_clean_reopen_finds(tmp_path: Path) -> None:
    # No false alarms: a store closed cleanly, or reopened at once, lost nothing.
    path = tmp_path / "o.db"
    for round_ in range(3):
        box = open_box(path)
        box.add([tele(i) for i in range(round_ * 30, round_ * 30 + 30)])
        box.commit()
        box.close()
    box = open_box(path)
    out = drain(box)
    assert alarms(out) == []
    assert box.last_seq() == 9 and [m.seq for m in out] == list(range(1, 10))
