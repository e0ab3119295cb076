"""MQTT transport options both ends of the link use (gateway uplink, command post)."""

from __future__ import annotations

import socket
from typing import Final

# MQTT is request/answer traffic of small packets: with Nagle's algorithm, a
# result published while our PUBACK for the command is still unacknowledged
# waits for the peer's delayed ACK (40 ms on Linux), twice per round trip.
MQTT_SOCKET_OPTIONS: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
