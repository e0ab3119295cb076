"""The protocol's preset deflate dictionary, version 1 (docs/protocol.md §6.1.5).

A report by exception sends a few readings of many devices a message: spelled out,
the point table's names and units would cost more than the readings. Deflate
starting from these words (the shipped profiles' point entries and the street's
device stem) sends a back-reference instead. A protocol constant: a zlib stream
names it by its Adler-32 (DICTID), so a different word list is a new dictionary
that decoders refuse until they know it; never edit this one.
"""

from __future__ import annotations

import zlib
from typing import Final

import msgpack

WORDS: Final = (
    ["voltage_l1", "V"], ["voltage_l2", "V"], ["voltage_l3", "V"], ["current_l1", "A"],
    ["current_l2", "A"], ["current_l3", "A"], ["power_l1", "W"], ["power_l2", "W"],
    ["power_l3", "W"], ["active_power", "W"], ["power_factor"], ["frequency", "Hz"],
    ["energy_import", "kWh"], ["energy_export", "kWh"], ["lamp_on"], ["dimming", "%"],
    ["power", "W"], ["voltage", "V"], ["current", "A"], ["energy", "kWh"],
    ["burning_hours", "h"], ["lamp_failure"], ["driver_fault"], ["overtemperature"],
    ["door_open"], ["driver_temperature", "°C"], ["rated_power", "W"], ["switch_count"],
    ["firmware_version"], ["comms_timeout", "s"], ["failsafe_dimming", "%"], ["mode"],
    ["plan"], ["cycle_counter"], ["cycle_second", "s"], ["cycle_length", "s"],
    ["active_plan"], ["conflict"], ["power_failure"], ["occupancy_1", "%"],
    ["occupancy_2", "%"], ["occupancy_3", "%"], ["occupancy_4", "%"], "lamppost-",
)  # fmt: skip
DICTIONARY: Final[bytes] = msgpack.packb(list(WORDS))  # the words as one MessagePack array
DICTIONARY_ID: Final = zlib.adler32(DICTIONARY).to_bytes(4, "big")  # a zlib stream's DICTID
