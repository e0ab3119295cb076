"""Taking commands off the wire without taking more than we can hold.

The uplink's MQTT client reads commands into a small inbox, and the uplink
acknowledges each one (PUBACK) only once it is answered: a backlog of any size
waits at the broker, and a command is never acknowledged and then dropped.

Three bounds, because brokers differ: we ask for at most `COMMAND_WINDOW`
unacknowledged commands (MQTT v5 Receive Maximum) and for no packet larger than
a command can be (Maximum Packet Size); and, since Mosquitto 2.0 sends a burst
of queued messages per PUBACK whatever we asked for, we stop reading the socket
while `COMMAND_WINDOW` commands wait, so TCP holds the rest at the broker. What
still does not fit (one read can bring several packets) goes to `shed`, which
answers it `busy`: never dropped unheard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import aiomqtt

from cityedge.protocol.commands import MAX_COMMAND_BYTES

COMMAND_WINDOW: Final = 64  # commands waiting for their answer before reading pauses
MAX_PACKET_BYTES: Final = MAX_COMMAND_BYTES + 4096  # a command, its topic and headers

Shed = Callable[[aiomqtt.Message], None]


class CommandClient(aiomqtt.Client):
    """aiomqtt's client that acknowledges only when told (`ack`) and pauses reading
    while its inbox is full. `headroom`: packets one read may bring beyond the
    window (paho reads up to one per message in flight, plus one).

    Pinned aiomqtt 2.5 / paho 2.2 internals are used where they expose no API:
    paho's manual acknowledgement, and aiomqtt's socket reader, replaced by ours."""

    def __init__(self, *args: Any, shed: Shed, headroom: int, **kwargs: Any) -> None:
        client = self

        class Inbox(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                if self.full():
                    shed(item)
                    return
                super().put_nowait(item)
                if self.qsize() >= COMMAND_WINDOW:
                    client._pause()

            def get_nowait(self) -> aiomqtt.Message:
                item = super().get_nowait()
                if self.qsize() < COMMAND_WINDOW:
                    client._resume()
                return item

        limit = COMMAND_WINDOW + headroom
        super().__init__(*args, queue_type=Inbox, max_queued_incoming_messages=limit, **kwargs)
        self._client.manual_ack_set(True)
        self._fd: int | None = None
        self.paused = False
        self.pauses = 0  # how often the inbox filled up (tests and diagnostics)
        self.resumed_at = 0.0  # loop time: nothing (no PUBACK either) was read before it

    def ack(self, message: aiomqtt.Message) -> None:
        """PUBACK a command: the broker then forgets it and may send another."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    # --- reading, paused while the inbox is full ----------------------------------

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        super()._on_socket_open(client, userdata, sock)
        self._fd = sock.fileno()
        # Queued after aiomqtt's own add_reader for this socket, so ours replaces it.
        self._loop.call_soon_threadsafe(self._loop.add_reader, self._fd, self._read)

    def _read(self) -> None:
        """What aiomqtt's reader does (paho reads; a failure ends the connection),
        stopping as soon as the inbox is full."""
        try:
            while not self.paused:
                self._client.loop_read()
                sock = self._client.socket()
                if sock is None or not (hasattr(sock, "pending") and sock.pending() > 0):
                    break  # TLS may hold decrypted bytes the selector cannot see
        except Exception as exc:
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _pause(self) -> None:
        if not self.paused and self._fd is not None:
            self.paused = True
            self.pauses += 1
            self._loop.remove_reader(self._fd)

    def _resume(self) -> None:
        if self.paused:
            self.paused = False
            self.resumed_at = self._loop.time()
            if self._fd is not None and self._client.socket() is not None:
                self._loop.add_reader(self._fd, self._read)
                self._loop.call_soon(self._read)  # bytes TLS buffered while we paused
