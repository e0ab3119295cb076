"""chunk() cuts a window's entries at the message limits (entries, bytes, a minute of
timestamps): against a plain statement of the rule, on random windows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.gateway.outbox.messages import CHUNK_SPAN, Entry, Group, chunk

entries = st.builds(
    Entry,
    kind=st.sampled_from(["telemetry", "event"]),
    priority=st.sampled_from([1, 2, 3]),
    ts=st.floats(1.7e9, 1.7e9 + 4 * CHUNK_SPAN),
    body=st.binary(min_size=1, max_size=40),
)


def by_the_rule(window: list[Entry], max_entries: int, max_bytes: int) -> list[Group]:
    """Per (priority, kind) in order of arrival, a message grows while it stays within
    max_entries, max_bytes (a first entry goes alone if it must) and CHUNK_SPAN."""
    groups: dict[tuple[int, str], list[Entry]] = {}
    for e in window:
        groups.setdefault((e.priority, e.kind), []).append(e)
    out: list[Group] = []
    for (priority, kind), group in groups.items():
        message: list[Entry] = []
        tail: list[Entry | None] = [*group, None]
        for nxt in tail:
            stamps = [m.ts for m in message] + ([] if nxt is None else [nxt.ts])
            if message and (
                nxt is None
                or len(message) == max_entries
                or sum(len(m.body) for m in message) + len(nxt.body) > max_bytes
                or max(stamps) - min(stamps) > CHUNK_SPAN
            ):
                stamps = [m.ts for m in message]
                body = b"".join(m.body for m in message)
                out.append((kind, priority, min(stamps), max(stamps), len(message), body))
                message = []
            if nxt is not None:
                message.append(nxt)
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(entries, max_size=60), st.integers(1, 8), st.integers(1, 200))
def test_messages_are_cut_by_the_rule(
    window: list[Entry], max_entries: int, max_bytes: int
) -> None:
    got = [
        (k, p, lo, hi, n, bytes(body))
        for k, p, lo, hi, n, body in chunk(window, max_entries, max_bytes)
    ]
    assert got == by_the_rule(window, max_entries, max_bytes)
