"""`[[drivers.ascii]]`: one serial line and the request/response devices on it.

Usually one device per line (an information panel on RS-232); an RS-485 line
may carry several, told apart by `address` (the profile's templates then use
`{address}`). Profiles are loaded and validated here, at config load: a bad
profile is an error at `devices[i].profile` naming the file and the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from cityedge.drivers.ascii.profile import (
    SHIPPED_PROFILES,
    Profile,
    ProfileError,
    profile_dirs,
    resolve_profile,
)
from cityedge.drivers.serialline.settings import SerialSection
from cityedge.sdk.tables import Convert, Field, Invalid, Table, check_table


def _load_profile(value: object, context: Mapping[str, Any]) -> object:
    """A profile name (`info-panel`) or a path, made into a `Profile`.

    Names are looked up under `ascii/` of the validation context's
    `profile_dirs` when the loader passes them (`DriverEnv.profile_dirs`),
    else among the shipped profiles (config/profiles/ascii/).
    """
    if not isinstance(value, str):
        return value  # a Profile given in code passes; anything else fails the type check
    given: tuple[Path, ...] = tuple(context.get("profile_dirs") or ())
    dirs = profile_dirs(given) if given else (SHIPPED_PROFILES,)
    try:
        return resolve_profile(value, dirs)
    except ProfileError as err:
        raise Invalid.in_file(err.source, err.problems) from None


ProfileRef = Annotated[Profile, Convert(_load_profile)]


class AsciiDevice(Table):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    profile: ProfileRef
    address: str | None = Field(default=None, min_length=1, max_length=16,
                                pattern=r"^[A-Za-z0-9_.:-]+$")  # fmt: skip
    poll_interval: Annotated[float, Field(gt=0, le=86400)] = 5.0
    timeout: Annotated[float, Field(gt=0, le=60)] = 1.0  # per exchange: request out, answer in
    retries: Annotated[int, Field(ge=0, le=10)] = 1  # extra attempts after a timeout/bad answer
    backoff_max: Annotated[float, Field(gt=0, le=3600)] = (
        60.0  # longest wait between polls while down
    )

    @check_table
    def _address(self) -> None:
        if self.profile.uses_address and self.address is None:
            raise ValueError(f"profile {self.profile.type!r} addresses its devices: "
                             "set address")  # fmt: skip


class Section(SerialSection):
    devices: list[AsciiDevice] = Field(min_length=1, max_length=32)

    @check_table
    def _distinct(self) -> None:
        names: dict[str, int] = {}
        addresses: dict[str | None, int] = {}
        problems = []
        for i, device in enumerate(self.devices):
            if device.name in names:
                problems.append(f"devices[{i}].name: {device.name!r} already used by "
                                f"devices[{names[device.name]}]")  # fmt: skip
            names.setdefault(device.name, i)
            if device.address in addresses:
                what = f"address {device.address!r}" if device.address else "no address"
                other = addresses[device.address]
                problems.append(f"devices[{i}].address: {what}, like devices[{other}]: "
                                "two devices on one line need distinct addresses")  # fmt: skip
            addresses.setdefault(device.address, i)
        if problems:
            raise ValueError("; ".join(problems))
