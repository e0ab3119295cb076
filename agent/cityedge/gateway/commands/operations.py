"""The operations a gateway runs on command: the one registry (docs/protocol.md §8.4).

Each operation says whether it addresses a device and how its args must look.
Both are checked with the body (check 7 of docs/protocol.md §4.1), before the
target, the clock or the replay cache are asked: a command whose args do not
fit is `malformed`, is not recorded as seen, and never runs. The runtime
supplies the implementations; an implementation for a name that is not in the
registry is a programming error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from cityedge.protocol.trust_store import TRUST_UPDATE_OP, parse_trust_update
from cityedge.sdk.model import Command, CommandResult

Operation = Callable[[Command], Awaitable[CommandResult]]
ArgsCheck = Callable[[Mapping[str, Any]], str | None]


class DeviceRule(StrEnum):
    NONE = "none"  # gateway-wide: body.device must be nil
    OPTIONAL = "optional"  # nil, or a device on this gateway whose policy lists the op
    REQUIRED = "required"  # a device on this gateway


@dataclass(frozen=True, slots=True)
class OperationSpec:
    name: str
    device: DeviceRule
    check: ArgsCheck  # None when the args fit, else what is wrong (the `malformed` detail)


def _no_args(args: Mapping[str, Any]) -> str | None:
    return f"args: expected none, got {', '.join(sorted(args))}" if args else None


def _write_args(args: Mapping[str, Any]) -> str | None:
    extra = sorted(set(args) - {"point", "value"})
    if extra:
        return f"args: unexpected {', '.join(extra)} (expected point, value)"
    if not isinstance(args.get("point"), str) or not args["point"]:
        return "args.point: expected the name of a point (text)"
    if "value" not in args or type(args["value"]) not in (bool, int, float, str):
        return "args.value: expected a bool, an integer, a float or text"
    return None


def _lighting_args(args: Mapping[str, Any]) -> str | None:
    if set(args) != {"lighting"} or not isinstance(args["lighting"], dict):
        return "args: expected exactly lighting (a table in the [lighting] config format)"
    return None


def _trust_args(args: Mapping[str, Any]) -> str | None:
    try:
        parse_trust_update(args)
    except ValueError as exc:
        return f"trust update: {exc}"
    return None


OPERATIONS: Final[Mapping[str, OperationSpec]] = {
    spec.name: spec
    for spec in (
        OperationSpec("ping", DeviceRule.OPTIONAL, _no_args),
        OperationSpec("rebirth", DeviceRule.OPTIONAL, _no_args),
        OperationSpec("diagnostics", DeviceRule.OPTIONAL, _no_args),
        OperationSpec("write", DeviceRule.REQUIRED, _write_args),
        OperationSpec("lighting.program", DeviceRule.NONE, _lighting_args),
        OperationSpec(TRUST_UPDATE_OP, DeviceRule.NONE, _trust_args),
    )
}


def malformed_detail(cmd: Command, known: Mapping[str, Operation]) -> str | None:
    """Why `cmd` is not a well-formed command for this gateway, or None."""
    spec = OPERATIONS.get(cmd.op)
    if spec is None or cmd.op not in known:
        return f"unknown operation {cmd.op!r}; this gateway runs {', '.join(sorted(known))}"
    if spec.device is DeviceRule.NONE and cmd.device is not None:
        return f"{cmd.op} is gateway-wide: body.device must be nil, got {cmd.device!r}"
    if spec.device is DeviceRule.REQUIRED and cmd.device is None:
        return f"{cmd.op} needs a device: body.device is nil"
    return spec.check(cmd.args)
