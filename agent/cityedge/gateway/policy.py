"""Local command policy: the gateway's own line of defence, even against a valid signature.

Declared per device type in the config's `[policy]` table. Default is deny: a
point that no rule names cannot be written, an operation that no rule lists
cannot be run.

    [policy.lamppost.writes]
    dimming = { min = 0, max = 100 }
    switch = { choices = [false, true] }

    [policy.traffic-controller.writes]
    plan = { choices = [1, 2, 3] }
    mode = { choices = ["normal", "flashing-amber", "dark"] }

    [policy.bollard]
    operations = ["bollard.lower"]      # explicit allowlist of non-write operations
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from cityedge.sdk.model import PointAccess, PointInfo, Value
from cityedge.sdk.problems import FileProblems
from cityedge.sdk.tables import Field, Invalid, Table, check_table


class PointRule(Table):
    min: float | None = None
    max: float | None = None
    choices: list[bool | int | float | str] | None = Field(default=None, min_length=1)
    max_length: int | None = Field(default=None, ge=1, le=1024)  # text points (panel messages)

    @check_table
    def _consistent(self) -> None:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")

    def refuses(self, value: Value) -> str | None:
        """Why `value` is not allowed, or None when it is."""
        if self.choices is not None:
            if value in self.choices and type(value) in {type(c) for c in self.choices}:
                return None
            return f"{value!r} is not one of {self.choices}"
        if isinstance(value, str):
            if self.max_length is not None and len(value) > self.max_length:
                return f"text longer than {self.max_length} characters"
            return None
        if isinstance(value, bool):
            return None
        if self.min is not None and value < self.min:
            return f"{value} is below the allowed minimum {self.min}"
        if self.max is not None and value > self.max:
            return f"{value} is above the allowed maximum {self.max}"
        return None


class DeviceTypePolicy(Table):
    writes: dict[str, PointRule] = Field(default_factory=dict)
    operations: list[str] = Field(default_factory=list)


class Policy(Table):
    """Rules by device type: the `[policy]` table, whose keys are device types."""

    root: dict[str, DeviceTypePolicy] = Field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, *, context: Any = None) -> Policy:
        try:
            return super().parse({"root": raw}, context=context)
        except Invalid as err:  # the `root` wrapper is ours, not a key of the file
            raise Invalid(problems=[replace(p, loc=p.loc[1:]) for p in err.problems]) from None

    def check_write(self, device_type: str, point: PointInfo, value: Value) -> str | None:
        """None when the write is allowed; otherwise the reason it is denied."""
        rules = self.root.get(device_type)
        if rules is None:
            return f"no policy for device type {device_type!r}: writes are denied"
        rule = rules.writes.get(point.name)
        if rule is None:
            return f"policy for {device_type!r} does not allow writing {point.name!r}"
        if point.access is not PointAccess.READ_WRITE:
            return f"{point.name!r} is read-only in the device profile"
        if point.kind == "text" and not isinstance(value, str):
            return f"{point.name!r} takes text"
        if point.kind in ("int", "float") and (isinstance(value, bool | str)):
            return f"{point.name!r} takes a number, got {type(value).__name__} {value!r:.40}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not a finite number"
        if point.kind == "int" and isinstance(value, float) and not value.is_integer():
            return f"{point.name!r} takes a whole number, got {value}"
        if point.kind == "bool" and not isinstance(value, bool):
            # 7 is not "on": an integer would reach the device as whatever it makes of it
            return f"{point.name!r} takes true/false, got {value!r}"
        # The profile's own limits hold even if a policy is wider.
        if isinstance(value, int | float) and not isinstance(value, bool):
            if point.minimum is not None and value < point.minimum:
                return f"{value} is below the device's limit {point.minimum}"
            if point.maximum is not None and value > point.maximum:
                return f"{value} is above the device's limit {point.maximum}"
        return rule.refuses(value)

    def check_operation(self, device_type: str, op: str) -> str | None:
        rules = self.root.get(device_type)
        if rules is None or op not in rules.operations:
            return f"policy for {device_type!r} does not allow operation {op!r}"
        return None


def load_policy(raw: Any, source: str = "<config>") -> Policy:
    try:
        return Policy.parse(raw or {})
    except Invalid as err:
        raise FileProblems.from_invalid(source, err, ("policy",)) from None
