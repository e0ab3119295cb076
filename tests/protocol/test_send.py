"""Sending a signed command and waiting for its signed result, against a real broker
and a gateway stand-in that speaks the protocol through our own API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cityedge.central.commands import NoResult, SiteNotFound, new_command, send_command
from cityedge.central.verifier import Verifier
from cityedge.protocol.key_files import create_key
from cityedge.protocol.keys import SigningKey
from cityedge.sdk.model import ResultCode
from cityedge.street.broker import Broker
from tests.protocol.street import GATEWAY, ROOT, SITE, Gateway, answering_gateway, cli


@pytest.fixture
def command_key(tmp_path: Path) -> SigningKey:
    return create_key(tmp_path / "command-post.key")


@pytest.fixture
async def gateway(
    broker: Broker, gw_key: SigningKey, command_key: SigningKey
) -> AsyncIterator[Gateway]:
    stand_in = Gateway(gw_key, {command_key.key_id: command_key.public_key}, broker.port)
    async with answering_gateway(stand_in) as running:
        yield running


async def test_write_is_done_with_readback_and_forged_results_are_ignored(
    broker: Broker, gateway: Gateway, gw_key: SigningKey, command_key: SigningKey
) -> None:
    command = new_command(
        command_key,
        GATEWAY,
        "write",
        device="lamppost-03",
        args={"point": "dim_level", "value": 80},
        ttl=30,
    )
    verifier = Verifier({gw_key.key_id: gw_key.public_key})
    result = await send_command(broker.url, command_key, command, trusted=verifier, within=20)
    assert result.command_id == command.id
    assert result.code is ResultCode.DONE
    assert (result.readback, result.readback_matched, result.detail) == (80, True, "")
    assert gateway.received == ["write"]
    assert verifier.rejected["unknown-key"] == 1  # the forged "done" was seen and refused
    assert command.expires - command.issued == 30


async def test_the_site_can_be_given_and_other_codes_come_back(
    broker: Broker, gateway: Gateway, gw_key: SigningKey, command_key: SigningKey
) -> None:
    command = new_command(command_key, GATEWAY, "write", device="bin-9", args={"value": 1})
    result = await send_command(
        broker.url,
        command_key,
        command,
        site=SITE,
        trusted={gw_key.key_id: gw_key.public_key},
        within=20,
    )
    assert result.code is ResultCode.UNKNOWN_DEVICE
    assert "bin-9" in result.detail


async def test_an_untrusted_command_key_is_answered_unknown_key(
    broker: Broker, gateway: Gateway, gw_key: SigningKey
) -> None:
    outsider = SigningKey.generate()
    command = new_command(outsider, GATEWAY, "ping")
    # the gateway does not read the id of a command it cannot verify: the answer names
    # the payload by its digest only, and that is how the sender still recognises it
    result = await send_command(
        broker.url, outsider, command, site=SITE,
        trusted={gw_key.key_id: gw_key.public_key}, within=20,
    )  # fmt: skip
    assert result.code is ResultCode.UNKNOWN_KEY and result.command_id == ""
    assert gateway.received == []


async def test_nobody_home(broker: Broker, gw_key: SigningKey, command_key: SigningKey) -> None:
    command = new_command(command_key, "gw-404", "ping")
    with pytest.raises(NoResult):
        await send_command(
            broker.url,
            command_key,
            command,
            site=SITE,
            trusted={gw_key.key_id: gw_key.public_key},
            within=1,
        )
    with pytest.raises(SiteNotFound, match=r"gw-404.*--site"):
        await send_command(
            broker.url, command_key, command, trusted={gw_key.key_id: gw_key.public_key}, within=1
        )


def test_new_command_refuses_a_non_positive_ttl(command_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="ttl"):
        new_command(command_key, GATEWAY, "ping", ttl=0)


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cli(*args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_send_cli_done_and_not_done(
    broker: Broker, gateway: Gateway, gw_key: SigningKey, command_key: SigningKey
) -> None:
    assert command_key.path is not None
    common = [
        "--broker",
        broker.url,
        "--key",
        str(command_key.path),
        "--trust",
        f"{GATEWAY}={gw_key.public_text()}",
        "--timeout",
        "20",
    ]
    code, out, err = await run_cli(
        "central", "send", *common, GATEWAY, "lamppost-03", "write", "point=dim_level", "value=80"
    )
    assert code == 0, err
    assert out.startswith("result ") and out.rstrip().endswith(": done readback=80 (matches)")
    code, out, err = await run_cli(
        "central", "send", *common, "--json", GATEWAY, "bin-9", "write", "value=true"
    )
    assert code == 1, err
    assert '"code": "unknown-device"' in out
    code, out, err = await run_cli("central", "send", *common, GATEWAY, "-", "ping")
    assert code == 0 and "done — pong" in out
    assert gateway.received == ["write", "write", "ping"]


async def test_send_cli_failures_are_one_clear_line(
    broker: Broker, gw_key: SigningKey, command_key: SigningKey, tmp_path: Path
) -> None:
    assert command_key.path is not None
    common = ["--broker", broker.url, "--trust", gw_key.public_text(), "--timeout", "1"]
    code, _, err = await run_cli(
        "central",
        "send",
        *common,
        "--key",
        str(command_key.path),
        "--site",
        SITE,
        "gw-404",
        "-",
        "ping",
    )
    assert code == 3 and "no result for command" in err
    command_key.path.chmod(0o644)
    code, _, err = await run_cli(
        "central", "send", *common, "--key", str(command_key.path), GATEWAY, "-", "ping"
    )
    assert code == 2 and f"chmod 600 {command_key.path}" in err
    command_key.path.chmod(0o600)
    code, _, err = await run_cli(
        "central", "send", *common, "--key", str(command_key.path), GATEWAY, "-", "write", "novalue"
    )
    assert code == 2 and "argument 'novalue': expected key=value" in err
    assert "Traceback" not in err
