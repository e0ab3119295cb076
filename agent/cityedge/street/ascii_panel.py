"""A street information panel that speaks config/profiles/ascii/info-panel.toml.

It sits on the device end of a serial line — the master fd of a `PtyPair`,
or any fd — and answers as the real sign does:

    STATUS?          -> STATUS OK TEMP=23.5 BRIGHT=80 MSG="..."
    MSG <text>       -> OK | ERR 2   (at most 64 printable characters, no ")
    BRIGHT <0-100>   -> OK | ERR 3
    anything else    -> ERR 1

It counts what it hears (`commands`, `heard`) so tests can check what reached
the wire, and has fault switches: `silent` (no answers), `garbled` (answers
with noise), `fault` (reports STATUS FAULT).

    python -m cityedge.street.ascii_panel --link /tmp/panel     # for the demo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from cityedge.drivers.serialline.framer import LineFramer
from cityedge.street.ptypair import PtyPair

MAX_TEXT = 64
_TEXT = re.compile(r"[ !#-~]*")
_NUMBER = re.compile(r"\d{1,3}")


class InfoPanel:
    """The sign's state and its side of the protocol."""

    def __init__(
        self, *, temperature: float = 23.5, brightness: int = 80, message: str = ""
    ) -> None:
        self.temperature = temperature
        self.brightness = brightness
        self.message = message
        self.fault = False
        self.max_text = MAX_TEXT  # a firmware setting: older signs take shorter texts
        self.silent = False
        self.garbled = False
        self.commands: Counter[str] = Counter()  # by command word: STATUS?, MSG, BRIGHT, …
        self.heard: list[bytes] = []  # every line received, as received (last 1000)
        self._framer = LineFramer(1024)
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the protocol (pure) -------------------------------------------------------

    def answer(self, line: bytes) -> bytes | None:
        """The answer line to one request line (None: the sign says nothing)."""
        self.heard.append(line)
        del self.heard[:-1000]
        text = line.decode("ascii", "replace")
        word, _, argument = text.partition(" ")
        self.commands[word] += 1
        if self.silent:
            return None
        if self.garbled:
            return b"ST\xffTUS OK TEMP=?? BRI"
        if text == "STATUS?":
            state = "FAULT" if self.fault else "OK"
            return (f'STATUS {state} TEMP={self.temperature:.1f} BRIGHT={self.brightness} '
                    f'MSG="{self.message}"').encode("ascii")  # fmt: skip
        if word == "MSG":
            if len(argument) > self.max_text or not _TEXT.fullmatch(argument):
                return b"ERR 2"
            self.message = argument
            return b"OK"
        if word == "BRIGHT":
            if not _NUMBER.fullmatch(argument) or int(argument) > 100:
                return b"ERR 3"
            self.brightness = int(argument)
            return b"OK"
        return b"ERR 1"

    # --- on a line -----------------------------------------------------------------

    def attach(self, fd: int) -> None:
        """Answer on `fd` (non-blocking) from now on."""
        self.detach()
        self._loop = asyncio.get_running_loop()
        self._fd = fd
        self._framer.reset()
        self._loop.add_reader(fd, self._on_readable)

    def detach(self) -> None:
        if self._fd >= 0 and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._fd = -1

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:  # the cable was pulled under us
            self.detach()
            return
        if not data:
            self.detach()
            return
        for line in self._framer.feed(data):
            reply = self.answer(line)
            if reply is not None:
                with contextlib.suppress(OSError):  # a short line into an empty pty fits
                    os.write(self._fd, reply + b"\r\n")


async def _serve(link: Path) -> None:
    panel = InfoPanel(message="Welcome")
    with PtyPair(link) as pair:
        panel.attach(pair.master)
        print(f"information panel on {link} (Ctrl-C stops)", flush=True)  # noqa: T201
        try:
            await asyncio.Event().wait()
        finally:
            panel.detach()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A simulated street information panel on a pty")
    parser.add_argument("--link", type=Path, required=True, help="symlink to create for the driver")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.link))


if __name__ == "__main__":
    main()
