"""Writing a point on command: checked against the device's catalogue and the
local policy, bounded in time, read back."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping

import structlog

from cityedge.gateway.policy import Policy
from cityedge.sdk.model import (
    Command,
    CommandResult,
    DeviceError,
    DeviceInfo,
    DeviceRejected,
    DeviceUnreachable,
    InvalidValue,
    PointNotWritable,
    ResultCode,
    UnknownDevice,
    UnknownPoint,
    Value,
)

log = structlog.get_logger(__name__)


async def write_point(
    cmd: Command,
    *,
    catalogue: Callable[[], Mapping[str, DeviceInfo]],
    policy: Policy,
    write: Callable[[str, str, Value], Awaitable[None]],
    read: Callable[[str, str], Awaitable[Value | None]],
    timeout: float,
) -> CommandResult:
    """A `write` command (its args checked with the body: a point name and a plain
    value): the device and point must exist, the policy allow the value; then the
    write, and a read-back to tell whether the device took it."""
    point_name = str(cmd.args["point"])
    value: Value = cmd.args["value"]
    device = catalogue().get(cmd.device or "")
    if device is None:
        return CommandResult(
            cmd.id, ResultCode.UNKNOWN_DEVICE, f"device {cmd.device!r} is not on this gateway"
        )
    point = device.points.get(point_name)
    if point is None:
        return CommandResult(
            cmd.id, ResultCode.UNKNOWN_POINT, f"device {device.name!r} has no point {point_name!r}"
        )
    denied = policy.check_write(device.device_type, point, value)
    if denied:
        return CommandResult(cmd.id, ResultCode.DENIED, denied)
    try:
        await asyncio.wait_for(write(device.name, point_name, value), timeout)
    except TimeoutError:
        return CommandResult(
            cmd.id,
            ResultCode.TIMED_OUT,
            f"no answer from {device.name!r} within {timeout}s",
        )
    except (UnknownDevice, UnknownPoint) as exc:
        return CommandResult(cmd.id, ResultCode.UNKNOWN_POINT, str(exc))
    except DeviceUnreachable as exc:
        return CommandResult(cmd.id, ResultCode.UNREACHABLE, str(exc))
    except (DeviceRejected, PointNotWritable, InvalidValue) as exc:
        return CommandResult(cmd.id, ResultCode.REJECTED, str(exc))
    except DeviceError as exc:
        return CommandResult(cmd.id, ResultCode.REJECTED, str(exc))
    readback: Value | None = None
    matched: bool | None = None
    try:
        readback = await asyncio.wait_for(read(device.name, point_name), timeout)
    except (TimeoutError, DeviceError) as exc:
        log.info("command.readback_failed", device=device.name, point=point_name, error=str(exc))
    if readback is not None:
        matched = _same(readback, value)
    return CommandResult(cmd.id, ResultCode.DONE, "written", readback, matched)


def _same(readback: Value, value: Value) -> bool:
    if isinstance(readback, float) or isinstance(value, float):
        try:
            return math.isclose(float(readback), float(value), rel_tol=1e-3, abs_tol=1e-3)
        except (TypeError, ValueError):
            return False
    if isinstance(readback, bool) or isinstance(value, bool):
        return bool(readback) == bool(value)
    return readback == value
