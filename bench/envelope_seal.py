"""How fast the uplink can seal, and the command post can open, 500-reading messages.

Baselines measured in the same run:
* seal vs "re-encode": packing the finished body (the same readings block, a
  library's encoding of the same structure) plus the same signature: what the
  seal's regrouping of the stored readings into a block costs on top;
* seal vs "sign only": Ed25519 over a body of the same size, the floor;
* open vs "unpack + verify": one msgpack.unpackb of the body and the signature check,
  without the strict decoding into Reading objects.

Run: .venv/bin/python bench/envelope_seal.py [--entries 500] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import msgpack

from cityedge.protocol.entries import reading_entry
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.opening import open_message
from cityedge.protocol.sealing import MESSAGE_CONTEXT, seal
from cityedge.sdk.model import Reading


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second, best of three rounds of `seconds`/3 each (the machine is shared)."""
    best = 0.0
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(20):
                fn()
            calls += 20
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, calls / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    n, seconds = args.entries, args.seconds

    key = SigningKey.from_seed(bytes(32))
    trusted = {key.key_id: key.public_key}
    readings = [
        Reading(f"lamppost-{i % 64:02d}", ("power", "dim_level", "lamp_on")[i % 3],
                (41.5 + i, 80, True)[i % 3], 1700000000.0 + i * 0.1, ("W", "%", None)[i % 3])
        for i in range(n)
    ]  # fmt: skip
    entries = [reading_entry(r) for r in readings]

    def sealed() -> bytes:  # the block as it is: the byte comparison below needs it plain
        return seal(key, gateway="gw-17", site="old-town", kind="telemetry", seq=1,
                    ts=1700000000.0, historical=False, entries=entries, compress=False)  # fmt: skip

    block = msgpack.unpackb(msgpack.unpackb(sealed())["body"])["data"]

    def reencoded() -> bytes:
        body = msgpack.packb({
            "v": 2, "gw": "gw-17", "site": "old-town", "kind": "telemetry", "seq": 1,
            "ts": 1700000000.0, "hist": False, "data": block,
        })  # fmt: skip
        sig = key.sign(MESSAGE_CONTEXT + body)
        return bytes(msgpack.packb({"v": 2, "kid": key.key_id, "body": body, "sig": sig}))

    payload = sealed()
    assert msgpack.unpackb(reencoded())["body"] == msgpack.unpackb(payload)["body"]
    body = msgpack.unpackb(payload)["body"]
    signature = msgpack.unpackb(payload)["sig"]

    def sign_only() -> bytes:
        return key.sign(MESSAGE_CONTEXT + body)

    def unpack_verify() -> object:
        outer = msgpack.unpackb(payload)
        if not key.public_key.verify(outer["sig"], MESSAGE_CONTEXT + outer["body"]):
            raise AssertionError("the benchmark's own message failed to verify")
        return msgpack.unpackb(outer["body"])

    assert signature == sign_only()

    def encode_readings() -> object:
        return [reading_entry(r) for r in readings]

    def encode_plain() -> object:
        return [msgpack.packb([r.device, r.point, r.value, r.ts, r.unit]) for r in readings]

    figures = {
        "seal": rate(sealed, seconds),
        "re-encode": rate(reencoded, seconds),
        "sign only": rate(sign_only, seconds),
        "open": rate(lambda: open_message(payload, trusted), seconds),
        "unpack+verify": rate(unpack_verify, seconds),
        "reading_entry x N": rate(encode_readings, seconds),
        "packb x N": rate(encode_plain, seconds),
    }
    print(f"{n} readings per message, payload {len(payload)} bytes "
          f"({len(payload) / n:.1f} bytes/reading)")  # fmt: skip
    for name, per_s in figures.items():
        print(f"  {name:<18} {per_s:>10,.0f} msg/s  {per_s * n:>14,.0f} entries/s")
    print("ratios (higher is better for us):")
    print(f"  seal / re-encode          {figures['seal'] / figures['re-encode']:6.2f}x")
    print(f"  seal / sign only          {figures['seal'] / figures['sign only']:6.2f}x "
          "(1.0 = as fast as the signature alone)")  # fmt: skip
    print(f"  open / unpack+verify      {figures['open'] / figures['unpack+verify']:6.2f}x "
          "(cost of strict decoding)")  # fmt: skip
    print(
        f"  reading_entry / packb     {figures['reading_entry x N'] / figures['packb x N']:6.2f}x"
    )


if __name__ == "__main__":
    main()
