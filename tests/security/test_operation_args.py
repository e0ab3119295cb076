"""The operation registry's argument checks take whatever a signed body can carry
(any plain MessagePack map) and answer with a reason or None — never an exception —
and what they let through is what the operation needs."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.gateway.commands import OPERATIONS
from cityedge.gateway.commands.operations import DeviceRule, malformed_detail
from cityedge.sdk.model import Command

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=12) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12,
)  # fmt: skip
args_maps = st.dictionaries(
    st.sampled_from(["point", "value", "lighting", "version", "keys", "x"]) | st.text(max_size=6),
    plain, max_size=4,
)  # fmt: skip
KNOWN: dict[str, Any] = dict.fromkeys(OPERATIONS)


@settings(max_examples=500, deadline=None)
@given(op=st.sampled_from([*OPERATIONS, "format-disk", ""]), device=st.none() | st.text(max_size=6),
       args=args_maps)  # fmt: skip
def test_args_checks_never_raise_and_guard_what_runs(
    op: str, device: str | None, args: dict[str, Any]
) -> None:
    now = time.time()
    cmd = Command("c", "gw-1", device, op, args, now, now + 60, "k")
    why = malformed_detail(cmd, KNOWN)
    assert why is None or (isinstance(why, str) and why)
    if why is not None:
        return
    spec = OPERATIONS[op]
    assert (device is None) == (
        spec.device is DeviceRule.NONE
    ) or spec.device is DeviceRule.OPTIONAL
    if op == "write":
        assert set(args) == {"point", "value"} and isinstance(args["point"], str)
        assert type(args["value"]) in (bool, int, float, str)
    if op in ("ping", "rebirth", "diagnostics"):
        assert args == {}
