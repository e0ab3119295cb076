"""The rules every received payload is held to, and the strict reading they need.

The protocol's version and limits, the check of gateway and site names (their
rule is the topic layout's), why a payload is refused (`Reason`,
`EnvelopeError`), and the readers every opener shares: MessagePack without
duplicate keys or exotic types, and one checker per field shape, each naming
the field that is wrong (docs/protocol.md).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Final, TypeVar, cast

import msgpack

from cityedge.protocol.topics import NAME_PATTERN, NAME_RULE
from cityedge.sdk.model import ResultCode, Value

ENVELOPE_VERSION: Final = 2  # v1 is gone: nothing was deployed (docs/protocol.md §9)

MAX_MESSAGE_BYTES: Final = 1 << 20
MAX_SEQ: Final = (1 << 63) - 1
MAX_COMMAND_ID: Final = 128
MAX_DETAIL: Final = 4096
MAX_NESTING: Final = 32  # containers in free-form maps; deeper ones are sent as text
VALUE_TYPES: Final = (bool, int, float, str)
TIME_TYPES: Final = (int, float)


class Reason(StrEnum):
    """Why a payload was refused; stable strings, listed in docs/protocol.md."""

    TOO_LARGE = "too-large"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    WRONG_GATEWAY = "wrong-gateway"  # key bound to another gateway
    WRONG_TOPIC = "wrong-topic"  # body disagrees with the topic it came on
    # A key the gateway's trust store knows but will not use now (docs/protocol.md §11).
    REVOKED_KEY = "revoked-key"
    RETIRED_KEY = "retired-key"
    EXPIRED_KEY = "expired-key"
    KEY_NOT_YET_VALID = "key-not-yet-valid"


_RESULT_CODE_BY_REASON: dict[str, ResultCode] = {
    Reason.TOO_LARGE: ResultCode.TOO_LARGE,
    Reason.UNSUPPORTED_VERSION: ResultCode.UNSUPPORTED_VERSION,
    Reason.UNKNOWN_KEY: ResultCode.UNKNOWN_KEY,
    # A key the trust store knows but will not use answers `unknown-key`; the detail
    # and the security event's data.reason give the precise reason (docs/protocol.md §8.2).
    Reason.REVOKED_KEY: ResultCode.UNKNOWN_KEY,
    Reason.RETIRED_KEY: ResultCode.UNKNOWN_KEY,
    Reason.EXPIRED_KEY: ResultCode.UNKNOWN_KEY,
    Reason.KEY_NOT_YET_VALID: ResultCode.UNKNOWN_KEY,
    Reason.BAD_SIGNATURE: ResultCode.BAD_SIGNATURE,
    Reason.WRONG_GATEWAY: ResultCode.WRONG_TARGET,
    Reason.WRONG_TOPIC: ResultCode.WRONG_TARGET,
}


class EnvelopeError(Exception):
    """A payload that was refused. `code` is a `Reason` value; `detail` says where and why."""

    def __init__(
        self, code: str, detail: str, key_id: str | None = None, *, body: bytes | None = None
    ) -> None:
        self.code = code
        self.detail = detail
        self.key_id = key_id  # the envelope's kid, once it was read
        self.body = body  # the unverified body bytes, once the envelope was read
        # A refused command's id as far as it could be read (unverified), for the answer.
        self.command_id = ""
        super().__init__(f"{code}: {detail}")

    @property
    def result_code(self) -> ResultCode:
        """The command result a gateway answers with when a command is refused for this."""
        return _RESULT_CODE_BY_REASON.get(self.code, ResultCode.MALFORMED)


def malformed(detail: str) -> EnvelopeError:
    return EnvelopeError(Reason.MALFORMED, detail)


def check_name(value: str, what: str) -> None:
    """For senders: ValueError unless `value` is a valid gateway or site id."""
    if NAME_PATTERN.match(value) is None:
        raise ValueError(f"{what} {value!r}: expected {NAME_RULE}")


# --- strict decoding -----------------------------------------------------------------


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # Duplicate keys would let two decoders read one signed body two ways.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate map key")
    return result


def unpack(data: bytes, where: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, object_pairs_hook=_unique_keys)
    except Exception as exc:  # msgpack raises a zoo (ValueError, TypeError, OutOfData, …)
        raise malformed(f"{where}: not valid MessagePack ({type(exc).__name__}: {exc})") from None


def expect_version(v: Any, where: str) -> None:
    if type(v) is not int:
        raise malformed(f"{where}: expected an integer version, got {show(v)}")
    if v != ENVELOPE_VERSION:
        raise EnvelopeError(
            Reason.UNSUPPORTED_VERSION, f"{where} is {v}; this side speaks {ENVELOPE_VERSION}"
        )


def expect_map(obj: Any, keys: frozenset[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise malformed(f"{where}: expected a map, got {show(obj)}")
    if obj.keys() != keys:
        missing = sorted(keys - obj.keys())
        extra = sorted(map(str, obj.keys() - keys))
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise malformed(f"{where}: {'; '.join(parts)}")


def show(value: Any) -> str:
    if isinstance(value, list | dict):  # never repr a hostile structure whole
        return f"{type(value).__name__} of {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '…'}"


def read_text(value: Any, where: str, *, limit: int | None = None, empty: bool = True) -> str:
    # Entry texts have no length limit of their own (the payload bound caps them)
    # and may be empty: the encoders do not refuse such readings either.
    if not isinstance(value, str):
        raise malformed(f"{where}: expected text, got {show(value)}")
    if not value and not empty:
        raise malformed(f"{where}: must not be empty")
    if limit is not None and len(value) > limit:
        raise malformed(f"{where}: longer than {limit} characters")
    return value


def read_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or NAME_PATTERN.match(value) is None:
        raise malformed(f"{where}: expected {NAME_RULE}, got {show(value)}")
    return value


def read_time(value: Any, where: str) -> float:
    # Integers are accepted: some MessagePack libraries write 1700000000.0 as an int.
    if type(value) not in TIME_TYPES or not math.isfinite(value):
        raise malformed(f"{where}: expected a finite number of seconds, got {show(value)}")
    return float(value)


def read_value(value: Any, where: str) -> Value:
    if type(value) not in VALUE_TYPES:
        raise malformed(f"{where}: expected bool, int, float or text, got {show(value)}")
    return cast(Value, value)


def read_optional_value(value: Any, where: str) -> Value | None:
    return None if value is None else read_value(value, where)


def read_optional_bool(value: Any, where: str) -> bool | None:
    if value is not None and type(value) is not bool:
        raise malformed(f"{where}: expected a boolean or nil, got {show(value)}")
    return value


def _plain(value: Any, where: str, depth: int) -> None:
    """Only plain MessagePack values in free-form maps: no ext types, no timestamps,
    containers nested at most MAX_NESTING deep."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return
    if isinstance(value, list | dict) and depth > MAX_NESTING:
        raise malformed(f"{where}: nested deeper than {MAX_NESTING} levels")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        read_plain_map(value, where, depth)
        return
    raise malformed(f"{where}: unsupported MessagePack type ({type(value).__name__})")


def read_plain_map(value: Any, where: str, depth: int = 0) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(f"{where}: expected a map, got {show(value)}")
    for k, v in value.items():
        if not isinstance(k, str):
            raise malformed(f"{where}: keys must be text, got {show(k)}")
        _plain(v, f"{where}.{k}", depth + 1)
    return value


def read_array(value: Any, where: str, smallest: int, largest: int) -> list[Any]:
    if not isinstance(value, list) or not smallest <= len(value) <= largest:
        raise malformed(
            f"{where}: expected an array of {smallest}-{largest} fields, got {show(value)}"
        )
    return value


_E = TypeVar("_E", bound=StrEnum)


def read_choice(enum: type[_E], value: Any, where: str) -> _E:
    try:
        return enum(value) if isinstance(value, str) else enum("\0")
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise malformed(f"{where}: expected one of {allowed}, got {show(value)}") from None
