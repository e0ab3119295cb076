"""The last `cityedge check` run, kept for the maintenance page (`<state_dir>/last-check.json`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cityedge.sdk.atomic import write_atomic
from cityedge.sdk.checks import CheckResult, Status, worst

MAX_RESULTS = 2000
FILE_NAME = "last-check.json"


@dataclass(frozen=True, slots=True)
class CheckRecord:
    ts: float
    results: tuple[CheckResult, ...]
    user: str = ""

    @property
    def status(self) -> Status:
        return worst(self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "user": self.user,
            "status": self.status.label,
            "results": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: Any) -> CheckRecord:
        """ValueError names what is wrong (the control server answers with it)."""
        if not isinstance(data, dict):
            raise ValueError("expected an object")
        ts = data.get("ts")
        if not isinstance(ts, int | float) or isinstance(ts, bool):
            raise ValueError("ts: expected a time")
        raw = data.get("results")
        if not isinstance(raw, list) or len(raw) > MAX_RESULTS:
            raise ValueError(f"results: expected a list of at most {MAX_RESULTS}")
        results = []
        for i, item in enumerate(raw):
            try:
                results.append(CheckResult.from_json(item))
            except ValueError as exc:
                raise ValueError(f"results[{i}].{exc}") from None
        user = data.get("user", "")
        return cls(float(ts), tuple(results), user if isinstance(user, str) else "")


def save(path: Path, record: CheckRecord) -> None:
    """Atomically; raises OSError (callers decide whether that matters)."""
    write_atomic(path, json.dumps(record.to_json(), ensure_ascii=False), mode=0o640)


def load(path: Path) -> CheckRecord | None:
    try:
        return CheckRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
