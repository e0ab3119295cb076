"""Replay a capture of NMEA sentences into a serial line, as a receiver would send them.

For the demo (a vehicle's GPS on a pty) and the tests. A capture is a text file
of sentences, one per line, exactly as recorded (bad lines included: they are
part of what a driver must survive).

    python -m cityedge.street.gps tests/serial/data/vehicle.nmea --link /tmp/gps --loop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog

from cityedge.street.ptypair import PtyPair

log = structlog.get_logger(__name__)

Send = Callable[[bytes], Awaitable[None]]


def load_capture(path: Path) -> list[bytes]:
    """The capture's lines, without their line endings (blank lines skipped)."""
    return [line for line in path.read_bytes().splitlines() if line.strip()]


async def replay(send: Send, lines: Sequence[bytes], *, gap: float = 0.0) -> int:
    """Send each line with CRLF, `gap` seconds apart; returns the bytes sent."""
    sent = 0
    for line in lines:
        data = line + b"\r\n"
        await send(data)
        sent += len(data)
        if gap:
            await asyncio.sleep(gap)
    return sent


async def _serve(capture: Path, link: Path, gap: float, loop: bool) -> None:
    lines = load_capture(capture)
    with PtyPair(link) as pair:

        async def send(data: bytes) -> None:
            try:
                await pair.send(data, timeout=max(1.0, gap * 4))
            except TimeoutError:  # nobody reads the line: a receiver just keeps talking
                log.debug("nmea.replay_unread", link=str(link))

        print(f"replaying {len(lines)} lines of {capture} on {link} (Ctrl-C stops)", flush=True)  # noqa: T201
        while True:
            await replay(send, lines, gap=gap)
            if not loop:
                break


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--link", type=Path, required=True, help="symlink to create for the driver")
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between lines")
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.capture, args.link, args.gap, args.loop))


if __name__ == "__main__":
    main()
