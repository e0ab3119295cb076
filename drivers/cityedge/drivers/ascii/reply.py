"""An answer line → values, or a clear reason why not. Pure: no I/O.

The whole line must match (`re.fullmatch`): the request's `expect` regex for a
poll, the point's `write_expect` (default: the device's `ok`) for a write. A
line matching the device's `error` regex (checked first) is the device refusing (`Refused`,
never retried); anything else is a `BadReply` (garbled, truncated, an answer
to something else), which the driver counts and may retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cityedge.drivers.ascii.points import DecodeError, Point
from cityedge.drivers.ascii.profile import Profile, Request
from cityedge.sdk.model import Value


class BadReply(ValueError):
    """An answer that cannot be used; `reason` is a health counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


class Refused(ValueError):
    """The device answered with its error form (e.g. `ERR 3`)."""

    def __init__(self, code: str | None, line: str) -> None:
        self.code = code
        self.line = line
        super().__init__(f"device answered {shown(line)}")


def decode_line(profile: Profile, raw: bytes) -> str:
    try:
        return raw.decode(profile.encoding)
    except UnicodeDecodeError as exc:
        raise BadReply("decode", f"not {profile.encoding} text at byte {exc.start}: "
                                 f"{shown(raw)}") from None  # fmt: skip


def check_refusal(profile: Profile, line: str) -> None:
    if profile.error is None:
        return
    match = profile.error.fullmatch(line)
    if match is not None:
        code = match.groupdict().get("code")
        raise Refused(code if isinstance(code, str) else None, line)


def parse_reply(profile: Profile, request: Request, raw: bytes) -> dict[str, Value]:
    """The values of the points `request` carries, from one answer line."""
    line = decode_line(profile, raw)
    check_refusal(profile, line)
    match = request.expect.fullmatch(line)
    if match is None:
        raise BadReply("mismatch", f"answer to {request.name!r} does not match: {shown(line)}")
    return values_of(profile.points, request, match)


def values_of(
    points: Mapping[str, Point], request: Request, match: re.Match[str]
) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for name in request.points:
        point = points[name]
        text = match.group(point.group)
        if text is None:  # an optional group the device left out this time
            continue
        try:
            values[name] = point.decode(text)
        except DecodeError as exc:
            raise BadReply("decode", str(exc)) from None
    return values


def check_write_answer(profile: Profile, point: Point, raw: bytes) -> None:
    """Accept the answer to a write of `point`, or raise Refused / BadReply."""
    line = decode_line(profile, raw)
    check_refusal(profile, line)
    expected = point.write_expect or profile.ok
    if expected.fullmatch(line):
        return
    raise BadReply("mismatch", f"answer to writing {point.name!r} is not "
                               f"{expected.pattern!r}: {shown(line)}")  # fmt: skip


def shown(line: str | bytes, limit: int = 60) -> str:
    """A device's line as a log or an error can show it: escaped, and short."""
    text = line.decode("ascii", "backslashreplace") if isinstance(line, bytes) else line
    cut = text[:limit]
    return repr(cut) + ("…" if len(text) > limit else "")
