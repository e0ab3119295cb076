"""The demo's command post in-process: verify every message, keep the street view, draw it.

On a terminal the view is redrawn in place (rich Live); into a pipe or a file it is
printed once at the end, so a log of the demo stays readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cityedge.central.link import BrokerError, parse_broker_url
from cityedge.central.trust import load_gateway_trust
from cityedge.central.verifier import Verdict, Verifier
from cityedge.central.watch import watch
from cityedge.protocol.key_files import load_trust
from cityedge.street.show import StreetView

if TYPE_CHECKING:
    from rich.console import RenderableType

REFRESH = 0.5  # seconds between redraws


class ShowTask:
    def __init__(self, port: int, gateway_key: str, command_key: Path) -> None:
        self.url = parse_broker_url(f"mqtt://127.0.0.1:{port}")
        trust = load_gateway_trust([gateway_key])
        self.verifier = Verifier(
            trust.keys, bindings=trust.bindings, command_keys=load_trust([str(command_key)])
        )
        self.view = StreetView()
        self.stop = asyncio.Event()
        self.problem: str | None = None

    def _feed(self, verdict: Verdict) -> None:
        self.view.feed(verdict)

    async def run(self, street_stopped: asyncio.Event) -> None:
        """Watch and draw until `self.stop` (the demo's end) is set."""
        from rich.console import Console
        from rich.live import Live

        from cityedge.sdk.logs import configure_logging

        configure_logging("error", "console")  # the view is the output; no log lines in it
        console = Console()
        watcher = asyncio.create_task(self._watch())
        try:
            if console.is_terminal:
                with Live(self._frame(), console=console, auto_refresh=False) as live:
                    while not self.stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.stop.wait(), REFRESH)
                        live.update(self._frame(), refresh=True)
            else:
                await self.stop.wait()
                console.print(self._frame())
        finally:
            self.stop.set()  # the watch ends by itself on it; cancel only one that hangs
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watcher), 5)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if self.problem:
                print(f"command post: {self.problem}", file=sys.stderr)  # noqa: T201

    def _frame(self) -> RenderableType:
        return self.view.render(self.view.real_gaps(self.verifier.missing()))

    async def _watch(self) -> None:
        try:
            await watch(self.url, self.verifier, self._feed, stop=self.stop)
        except BrokerError as err:
            self.problem = f"broker {err}"
