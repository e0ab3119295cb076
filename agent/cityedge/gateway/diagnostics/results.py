"""What a check says: ✔ / ⚠ / ✘, one line of detail, one line of remedy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Status(IntEnum):
    """Ordered by gravity: the exit status of `cityedge check` is the worst one."""

    OK = 0
    WARN = 1
    FAIL = 2

    @property
    def mark(self) -> str:
        return _MARKS[self]

    @property
    def label(self) -> str:
        return self.name.lower()


_MARKS = {Status.OK: "✔", Status.WARN: "⚠", Status.FAIL: "✘"}
_BY_LABEL = {s.label: s for s in Status}


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str  # dotted and stable: "broker.tls", "modbus.lamppost-003"
    status: Status
    detail: str
    remedy: str = ""  # empty when there is nothing to do

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.label,
            "detail": self.detail,
            "remedy": self.remedy,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        """Read back what `to_json` wrote (a recorded check); ValueError names the field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        fields = {}
        for key in ("name", "status", "detail", "remedy"):
            value = data.get(key, "" if key == "remedy" else None)
            if not isinstance(value, str) or len(value) > 2000:
                raise ValueError(f"{key}: expected text of at most 2000 characters")
            fields[key] = value
        status = _BY_LABEL.get(fields["status"])
        if status is None:
            raise ValueError(
                f"status: expected one of {sorted(_BY_LABEL)}, got {fields['status']!r}"
            )
        return cls(fields["name"], status, fields["detail"], fields["remedy"])


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def warn(name: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(name, Status.WARN, detail, remedy)


def fail(name: str, detail: str, remedy: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, remedy)


def worst(results: Iterable[CheckResult]) -> Status:
    return max((r.status for r in results), default=Status.OK)
