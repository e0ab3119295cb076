"""What a Modbus point is, once its profile has been validated.

Plain frozen data shared by the planner, the codec, the driver and the
simulator; the TOML schema that produces it lives in `profile.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cityedge.sdk.model import PointAccess, PointInfo


class RegisterKind(StrEnum):
    """The four Modbus tables, in the order requests are planned and sent."""

    COIL = "coil"
    DISCRETE = "discrete"
    INPUT = "input"
    HOLDING = "holding"

    @property
    def is_bit(self) -> bool:
        return self in (RegisterKind.COIL, RegisterKind.DISCRETE)

    @property
    def writable(self) -> bool:
        return self in (RegisterKind.COIL, RegisterKind.HOLDING)


class DataType(StrEnum):
    BOOL = "bool"  # a coil/discrete input, or a whole register read as != 0
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    BIT = "bit"  # one bit (`bit = 0..15`) of a 16-bit register

    @property
    def registers(self) -> int:
        return 2 if self in (DataType.INT32, DataType.UINT32, DataType.FLOAT32) else 1

    @property
    def is_boolean(self) -> bool:
        return self in (DataType.BOOL, DataType.BIT)


class Order(StrEnum):
    """Byte order inside a register, or word order of a 32-bit value.

    `big` is the Modbus default (most significant first); `little` swaps.
    """

    BIG = "big"
    LITTLE = "little"


@dataclass(frozen=True, slots=True)
class Point:
    """One named value of a device type. `address` is the 0-based wire address."""

    name: str
    register: RegisterKind
    address: int
    type: DataType
    bit: int | None = None
    byte_order: Order = Order.BIG
    word_order: Order = Order.BIG
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    access: PointAccess = PointAccess.READ
    minimum: float | None = None
    maximum: float | None = None
    deadband: float | None = None
    alarm: str | None = None  # event kind raised while this boolean point is true
    choices: tuple[int | float, ...] | None = None  # the only values a write may set
    description: str = ""
    # Registers (or bits, for coils and discrete inputs) this point spans; kept, not
    # derived on each use: every poll decodes every point.
    size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", 1 if self.register.is_bit else self.type.registers)

    @property
    def end(self) -> int:
        """One past the last address this point spans."""
        return self.address + self.size

    @property
    def writable(self) -> bool:
        return self.access is PointAccess.READ_WRITE

    @property
    def value_kind(self) -> str:
        """`bool`, `int` or `float`, as the core's `PointInfo.kind` says it."""
        if self.type.is_boolean:
            return "bool"
        if self.type is DataType.FLOAT32 or self.scale != 1 or self.offset != 0:
            return "float"
        return "int"

    def info(self) -> PointInfo:
        return PointInfo(
            name=self.name,
            kind=self.value_kind,
            unit=self.unit,
            access=self.access,
            minimum=self.minimum,
            maximum=self.maximum,
            choices=self.choices,
            deadband=self.deadband,
        )


@dataclass(frozen=True, slots=True)
class Limits:
    """What one read request to this device type may contain.

    `max_gap`: unused registers (or bits) worth reading through to merge two
    requests into one. `merge = False` is the quirk of devices that only answer
    one point per request.
    """

    max_registers: int = 125  # Modbus PDU limit for function codes 3/4
    max_bits: int = 2000  # Modbus PDU limit for function codes 1/2
    max_gap: int = 10
    merge: bool = True

    def cap(self, kind: RegisterKind) -> int:
        return self.max_bits if kind.is_bit else self.max_registers
