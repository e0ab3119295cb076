"""GWMP datagrams: the packet forwarder's own examples, every refusal, and fuzzing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.lorawan.semtech import (
    PULL_DATA,
    PUSH_ACK,
    PUSH_DATA,
    TX_ACK,
    ForwarderListener,
    GwmpError,
    RxPacket,
    ack,
    parse_datagram,
    pull_data,
    push_data,
)

EUI = "AA555A0000000000"
# The rxpk and stat objects of the Semtech packet forwarder's PROTOCOL.TXT examples.
RXPK_EXAMPLE = {
    "time": "2013-03-31T16:21:17.528002Z", "tmst": 3512348611, "chan": 2, "rfch": 0,
    "freq": 866.349812, "stat": 1, "modu": "LORA", "datr": "SF7BW125", "codr": "4/6",
    "rssi": -35, "lsnr": 5.1, "size": 32,
    "data": "-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84",
}  # fmt: skip
STAT_EXAMPLE = {
    "time": "2014-01-12 08:59:28 GMT", "lati": 46.24000, "long": 3.25230, "alti": 145,
    "rxnb": 2, "rxok": 2, "rxfw": 2, "ackr": 100.0, "dwnb": 2, "txnb": 2,
}  # fmt: skip


def datagram(
    kind: int, body: dict[str, object] | bytes | None = None, token: int = 0x1234
) -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
    return ack(token, kind) + bytes.fromhex(EUI) + raw


def test_the_protocol_examples_parse() -> None:
    # The example's data is not padded base64 of 32 bytes; give it real bytes of that size.
    rxpk = dict(RXPK_EXAMPLE, data=base64.b64encode(bytes(range(32))).decode())
    got = parse_datagram(datagram(PUSH_DATA, {"rxpk": [rxpk], "stat": STAT_EXAMPLE}))
    assert got.kind == PUSH_DATA and got.token == 0x1234 and got.eui == EUI
    (packet,) = got.rxpk
    assert packet.data == bytes(range(32)) and packet.freq == 866.349812
    assert packet.spreading_factor == 7 and packet.bandwidth == 125
    assert packet.rssi == -35 and packet.lsnr == 5.1 and packet.crc_ok
    assert got.stat is not None and got.stat.rxok == 2 and got.stat.ackr == 100.0


def test_pull_data_and_tx_ack() -> None:
    assert parse_datagram(pull_data(7, EUI)).kind == PULL_DATA
    assert parse_datagram(datagram(TX_ACK)).kind == TX_ACK
    assert parse_datagram(datagram(TX_ACK, {"txpk_ack": {"error": "NONE"}})).kind == TX_ACK


def test_one_bad_rxpk_does_not_lose_the_others() -> None:
    good = {"freq": 868.1, "rssi": -90, "lsnr": 3, "datr": "SF9BW125", "data": "QAE="}
    bad = dict(good, datr="SF99")
    got = parse_datagram(datagram(PUSH_DATA, {"rxpk": [good, bad, good]}))
    assert len(got.rxpk) == 2
    assert got.rejected == (
        "bad-field: rxpk[1].datr: expected \"SF<5-12>BW<125|250|500|203|406|812>\", got 'SF99'",
    )


def test_a_bad_status_report_does_not_lose_the_frames_beside_it() -> None:
    good = {"freq": 868.1, "rssi": -90, "lsnr": 3, "datr": "SF9BW125", "data": "QAE="}
    for stat, field in (
        ([1], "stat: expected an object"),
        ({"ackr": 10**400}, "stat.ackr"),  # a float() of it would overflow
        ({"rxnb": -1}, "stat.rxnb"),
        ({"rxok": 2**64}, "stat.rxok"),
        ({"ackr": True}, "stat.ackr"),
    ):
        got = parse_datagram(datagram(PUSH_DATA, {"rxpk": [good], "stat": stat}))
        assert len(got.rxpk) == 1 and got.stat is None
        assert len(got.rejected) == 1 and field in got.rejected[0], got.rejected


def test_more_rxpk_entries_than_a_forwarder_sends_are_reported_not_silently_cut() -> None:
    good = {"freq": 868.1, "rssi": -90, "lsnr": 3, "datr": "SF9BW125", "data": "QAE="}
    got = parse_datagram(datagram(PUSH_DATA, {"rxpk": [good] * 300}))
    assert len(got.rxpk) == 256
    assert got.rejected == ("too-many: rxpk[256:]: 44 entries beyond 256 dropped",)


@pytest.mark.parametrize(
    "datr", ["SF7BW125\n", "SF4BW125", "SF13BW125", "SF7BW126", "SF07BW1250", "sf7bw125", "SF7"]
)
def test_data_rates_outside_lora_are_refused(datr: str) -> None:
    entry = {"freq": 868.1, "rssi": -90, "lsnr": 3, "datr": datr, "data": "QAE="}
    got = parse_datagram(datagram(PUSH_DATA, {"rxpk": [entry]}))
    assert got.rxpk == () and "rxpk[0].datr" in got.rejected[0]


@pytest.mark.parametrize(("stat", "crc"), [(1, 1), (0, 0), (-1, -1)])
def test_the_radio_crc_status_is_kept(stat: int, crc: int) -> None:
    entry = {"freq": 868.1, "rssi": -90, "lsnr": 3, "datr": "SF12BW500", "data": "QAE="}
    got = parse_datagram(datagram(PUSH_DATA, {"rxpk": [dict(entry, stat=stat)]}))
    assert got.rxpk[0].crc == crc and got.rxpk[0].crc_ok is (crc == 1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too-short"),
        (b"\x02\x00", "too-short"),
        (b"\x01\x00\x00\x00" + bytes(8), "bad-version"),
        (b"\x02\x00\x00\x01" + bytes(8), "unexpected-type"),  # PUSH_ACK comes from servers
        (b"\x02\x00\x00\x00\x01", "too-short"),
        (b"\x02\x00\x00\x02" + bytes(9), "bad-length"),
        (datagram(PUSH_DATA, b"{nope"), "bad-json"),
        (datagram(PUSH_DATA, b"[1, 2]"), "bad-json"),
        (datagram(PUSH_DATA, b"\xff\xfe"), "bad-json"),
        (datagram(PUSH_DATA, {"rxpk": {"not": "a list"}}), "bad-json"),
        (bytes(70000), "too-large"),
    ],
)
def test_malformed_datagrams_name_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(GwmpError) as err:
        parse_datagram(data)
    assert err.value.reason == reason and err.value.detail


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"data": "!!!"}, "rxpk[0].data: not valid base64"),
        ({"size": 9}, "rxpk[0].size"),
        ({"freq": "868"}, "rxpk[0].freq"),
        ({"rssi": True}, "rxpk[0].rssi"),
        ({"lsnr": 1e9}, "rxpk[0].lsnr"),
        ({"stat": "ok"}, "rxpk[0].stat"),
        ({"stat": 2}, "rxpk[0].stat"),
        ({"stat": True}, "rxpk[0].stat"),
    ],
)
def test_bad_rxpk_fields_are_named(change: dict[str, object], field: str) -> None:
    entry = {"freq": 868.1, "rssi": -90, "lsnr": 3, "datr": "SF9BW125", "data": "QAE=", "size": 2}
    got = parse_datagram(datagram(PUSH_DATA, {"rxpk": [dict(entry, **change)]}))
    assert got.rxpk == () and field in got.rejected[0]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)  # beyond any float
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
rxpk_like = st.fixed_dictionaries(
    {},
    optional={
        "freq": json_values | st.floats(100, 3000), "rssi": json_values | st.integers(-200, 50),
        "lsnr": json_values, "datr": json_values | st.sampled_from(["SF7BW125", "SF12BW500"]),
        "data": json_values | st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        "size": json_values, "stat": json_values, "modu": st.sampled_from(["LORA", "FSK", 3]),
        "tmst": json_values, "chan": json_values,
    },
)  # fmt: skip


@settings(max_examples=5_000, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(GwmpError):
        parse_datagram(data)


@settings(max_examples=5_000, deadline=None)
@given(
    st.sampled_from([PUSH_DATA, PULL_DATA, TX_ACK, 1, 3, 4, 9]),
    st.dictionaries(st.sampled_from(["rxpk", "stat", "x"]),
                    st.lists(rxpk_like, max_size=3) | json_values | rxpk_like, max_size=3),
)  # fmt: skip
def test_fuzz_structured_json(kind: int, doc: dict[str, object]) -> None:
    try:
        got = parse_datagram(ack(1, kind) + bytes.fromhex(EUI) + json.dumps(doc).encode())
    except GwmpError:
        return
    for packet in got.rxpk:
        assert isinstance(packet.data, bytes) and 100 <= packet.freq <= 3000


def test_push_data_round_trip() -> None:
    got = parse_datagram(push_data(9, EUI, stat={"rxnb": 1}))
    assert got.token == 9 and got.stat is not None and got.stat.rxnb == 1


async def test_the_listener_acknowledges_and_counts_frames_without_a_good_crc() -> None:
    """Over a real loopback UDP socket: good frames delivered, the others counted apart."""
    loop = asyncio.get_running_loop()
    delivered: list[RxPacket] = []
    transport, listener = await loop.create_datagram_endpoint(
        lambda: ForwarderListener(lambda _eui, p: delivered.append(p) is None),  # type: ignore[func-returns-value]
        local_addr=("127.0.0.1", 0),
    )
    port = transport.get_extra_info("sockname")[1]
    acks: asyncio.Queue[bytes] = asyncio.Queue()

    class Forwarder(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, _addr: object) -> None:
            acks.put_nowait(data)

    sender, _ = await loop.create_datagram_endpoint(Forwarder, remote_addr=("127.0.0.1", port))
    try:
        frame = {"freq": 868.1, "rssi": -90, "lsnr": 3, "datr": "SF9BW125", "data": "QAE="}
        rxpk = [dict(frame, stat=1), dict(frame, stat=0), dict(frame, stat=-1)]
        sender.sendto(push_data(77, EUI, rxpk))
        assert await asyncio.wait_for(acks.get(), 5) == ack(77, PUSH_ACK)
    finally:
        sender.close()
        transport.close()
    assert len(delivered) == 1
    assert listener.stats.dropped == {"no-crc": 1, "bad-crc": 1}
