"""`[[drivers.nmea]]`: one GPS receiver on one serial port (a vehicle gateway's GNSS).

Errors name the key path: `drivers.nmea[0].baud: expected a standard baud
rate (...), got 4801`; `drivers.nmea[0].port: expected the absolute path of a
serial device ...`.
"""

from __future__ import annotations

from typing import Annotated

from cityedge.drivers.serialline.settings import SerialSection
from cityedge.sdk.tables import Field, check_table


class Section(SerialSection):
    device: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    baud: int = 4800  # NMEA 0183's own rate; many modules ship at 9600
    max_line: Annotated[int, Field(ge=16, le=65536)] = 256  # a sentence is at most 82
    interval: Annotated[float, Field(ge=0, le=3600)] = (
        1.0  # at most one set per interval; 0: every fix
    )
    epoch_gap: Annotated[float, Field(gt=0, le=5)] = (
        0.2  # this much quiet ends a burst of sentences
    )
    stale_after: Annotated[float, Field(gt=0, le=3600)] = 5.0  # no valid sentence this long: DOWN

    @check_table
    def _gap(self) -> None:
        if self.epoch_gap >= self.stale_after:
            raise ValueError(f"epoch_gap ({self.epoch_gap}) must be shorter than stale_after "
                             f"({self.stale_after})")  # fmt: skip

    def device_names(self) -> list[str]:
        return [self.device]  # one receiver per port
