"""The ABP key file (drivers/lorawan/keyring.py): who may read it, what a bad entry says,
and that a session key shows up nowhere but in memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cityedge.drivers.lorawan.decoders import load_device_types
from cityedge.drivers.lorawan.fcnt import FrameCounters
from cityedge.drivers.lorawan.frames import build_uplink
from cityedge.drivers.lorawan.keyring import MAX_FILE_BYTES, Keyring, SessionFileError, load_keyring
from cityedge.drivers.lorawan.uplinks import Radio, UplinkDecoder

NWK = "2B7E151628AED2A6ABF7158809CF4F3C"
APP = "3C4FCF098815F7ABA6D2AE2816157E2B"
SECRETS = (NWK, APP)


def entry(name: str = "bin-0042", addr: str = "26011BDA", nwk: str = NWK, app: str = APP,
          kind: str = "waste-bin") -> str:  # fmt: skip
    return (f'[[device]]\nname = "{name}"\ntype = "{kind}"\ndev_addr = "{addr}"\n'
            f'nwk_skey = "{nwk}"\napp_skey = "{app}"\n')  # fmt: skip


def write(tmp_path: Path, body: str, mode: int = 0o600) -> Path:
    path = tmp_path / "lorawan-sessions.toml"
    path.write_text(body, encoding="utf-8")
    path.chmod(mode)
    return path


def refused(path: Path) -> str:
    with pytest.raises(SessionFileError) as err:
        load_keyring(path)
    text = str(err.value)
    assert str(path) in text  # every error names the file
    for secret in SECRETS:
        assert secret not in text.upper()
    return text


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    ring = load_keyring(write(tmp_path, entry() + entry("noise-7", "26011BDB", kind="noise"), mode))
    assert len(ring) == 2 and sorted(s.name for s in ring.values()) == ["bin-0042", "noise-7"]
    bin_ = ring[0x26011BDA]
    assert (bin_.device_type, bin_.nwk_skey, bin_.app_skey) == (
        "waste-bin",
        bytes.fromhex(NWK),
        bytes.fromhex(APP),
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o700 | 0o001])
def test_modes_others_can_read_are_refused_with_the_remedy(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, entry(), mode)
    text = refused(path)
    assert f"chmod 600 {path}" in text and f"{mode:04o}" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, entry())
    os.chown(path, 4242, -1)
    text = refused(path)
    assert "uid 4242" in text and "chown" in text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (entry(nwk=NWK[:-2]), "device[0].nwk_skey: expected 32 hex digits"),
        (entry(app=APP[:-1] + "G"), "device[0].app_skey: expected 32 hex digits"),
        (entry().replace(f'"{NWK}"', "12345"), "device[0].nwk_skey: expected 32 hex digits"),
        (entry() + entry("b", "26011BDB", app="x" * 32), "device[1].app_skey: expected 32 hex"),
        (
            entry(addr="26011BDAA"),
            "device[0].dev_addr: expected 8 hex digits, like 26011BDA, got '26011BDAA'",
        ),
        (entry(name="bin 42"), "device[0].name: expected a name of letters"),
        (entry(kind=""), "device[0].type: expected a device type name"),
        (entry().replace('type = "waste-bin"\n', ""), "device[0].type: missing"),
        (entry() + entry(), "device[1].name: 'bin-0042' is listed twice"),
        (entry() + entry("bin-0043", "26011bda"), "device[1].dev_addr: 26011BDA is listed twice"),
        (entry() + "fcnt = 3\n", "device[0]: unknown key(s) fcnt"),
        ("[gateway]\nname = 'x'\n", "unknown key(s) gateway; expected [[device]]"),
        ("device = 3\n", "device: expected [[device]] tables"),
        ("device = [1]\n", "device[0]: expected a table"),
        (entry() + "[[device]\n", "not valid TOML"),
    ],
)
def test_bad_entries_are_reported_with_their_key_path(
    tmp_path: Path, body: str, expected: str
) -> None:
    assert expected in refused(write(tmp_path, body))


def test_an_empty_file_is_an_empty_keyring(tmp_path: Path) -> None:
    assert len(load_keyring(write(tmp_path, ""))) == 0


def test_missing_oversized_and_binary_files(tmp_path: Path) -> None:
    assert "cannot read the key file" in refused(tmp_path / "absent.toml")
    big = write(tmp_path, "#" * (MAX_FILE_BYTES + 1))
    assert "too large" in refused(big)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe" + entry().encode())
    binary.chmod(0o600)
    assert "cannot read" in refused(binary)


def test_a_toml_error_after_a_key_does_not_echo_the_key(tmp_path: Path) -> None:
    body = entry() + f'nwk_skey = "{NWK}"\n'  # a duplicate key: TOML refuses it
    assert "not valid TOML" in refused(write(tmp_path, body))


def test_keys_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    ring = load_keyring(write(tmp_path, entry()))
    session = ring[0x26011BDA]
    shown = [repr(session), str(session), repr(ring), str(ring), repr(list(ring.values()))]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text.upper() and secret.lower() not in text
    assert "bin-0042" in str(session) and "26011BDA" in str(session)


def test_keys_never_appear_in_the_log_of_refused_or_decoded_frames(tmp_path: Path) -> None:
    ring = load_keyring(write(tmp_path, entry()))
    session = ring[0x26011BDA]
    decoder = UplinkDecoder("lora", ring, FrameCounters(tmp_path / "fcnt.db"),
                            load_device_types())  # fmt: skip
    radio = Radio(rssi=-101.0, snr=4.0, spreading_factor=10, frequency=868.3, forwarders=("AA",))
    good = build_uplink(session.dev_addr, 5, 0, b"\x02", session.nwk_skey, session.app_skey)
    forged = build_uplink(session.dev_addr, 6, 0, b"\x02", bytes(16), session.app_skey)
    with capture_logs() as logs:
        assert decoder.decode(good, radio)  # radio readings
        assert decoder.decode(good, radio) == []  # replay
        assert decoder.decode(forged, radio) == []  # bad MIC
        assert decoder.decode(b"\x40\x01", radio) == []  # garbage
    assert decoder.refused["replay"] == 1 and decoder.refused["bad-mic"] == 1
    logged = repr(logs)
    assert "bad-mic" in logged
    for secret in SECRETS:
        assert secret not in logged.upper()
        assert repr(bytes.fromhex(secret)) not in logged


def test_the_keyring_is_read_only(tmp_path: Path) -> None:
    ring = load_keyring(write(tmp_path, entry()))
    assert isinstance(ring, Keyring)
    with pytest.raises(TypeError):
        ring[1] = ring[0x26011BDA]  # type: ignore[index]
