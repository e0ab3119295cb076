"""The HTTP behaviours the TALQ specification requires of every request and answer,
against the real server: request bodies plain, gzip or deflate (415 otherwise) and
answers in the same encoding; `talq-api-version`; `clientAddress` and
`talqRequestId`; explicit Content-Length, `Cache-Control: no-transform`; TALQ error
bodies; and HTTPS with mutual TLS outside test mode."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import json
import ssl
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cityedge.gateway.config import ConfigError, validate_config
from cityedge.gateway.talq.app import serve
from cityedge.street.modbus import ModbusStreet
from tests.talq.site import SAMPLE, Site, free_port, sample_config, wait_for

CMS = str(uuid.uuid4())
VERSION = {"talq-api-version": "2.7.1"}
PROGRAM: dict[str, Any] = {"id": "night", "ownerCMS": CMS, "type": "ControlProgramOne",
           "activePeriods": [{"name": "AstroClockActivePeriod", "sunsetOffset": 0,
                              "sunriseOffset": 0}],
           "fixedTimeControls": [{"startTime": "23:00:00",
                                  "command": {"state": {"name": "LevelState",
                                                        "value": 50}}}]}  # fmt: skip


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[str, Site]]:
    async with ModbusStreet(lampposts=2, meters=0) as street:
        port = free_port()
        site = Site(sample_config(tmp_path, street, port=port, cms_uri="http://127.0.0.1:9"))
        ready = asyncio.Event()
        task = asyncio.create_task(serve(site.core, ready))
        await asyncio.wait_for(ready.wait(), 10)
        try:
            yield f"http://127.0.0.1:{port}", site
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def url(base: str, path: str, *, write: bool = True) -> str:
    query = f"clientAddress={CMS}" + (f"&talqRequestId={uuid.uuid4()}" if write else "")
    return f"{base}{path}?{query}"


async def test_gzip_and_deflate_bodies_and_answers_in_the_same_encoding(
    gateway: tuple[str, Site],
) -> None:
    base, site = gateway
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for encoding in ("gzip", "deflate"):
            doc = {**PROGRAM, "id": f"night-{encoding}"}
            raw = json.dumps([doc]).encode()
            packed = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
            headers = {**VERSION, "Content-Type": "application/json",
                       "Content-Encoding": encoding}  # fmt: skip
            async with http.post(url(base, "/control-programs"), data=packed,
                                 headers=headers) as response:  # fmt: skip
                assert response.status == 201, await response.read()
                assert response.headers["Content-Encoding"] == encoding
                answer = await response.read()
                assert int(response.headers["Content-Length"]) == len(answer)
                plain = gzip.decompress(answer) if encoding == "gzip" else zlib.decompress(answer)
                assert json.loads(plain)[0]["id"] == doc["id"]
        assert {"night-gzip", "night-deflate"} <= set(site.core.store.programs)
        headers = {**VERSION, "Content-Type": "application/json", "Content-Encoding": "br"}
        async with http.post(url(base, "/control-programs"), data=b"xx", headers=headers) as r:
            assert r.status == 415
            assert json.loads(await r.read())[0]["key"] == "headerValueNotValid"


@pytest.mark.parametrize(
    ("headers", "write", "path", "status", "key"),
    [
        ({}, False, "/devices", 400, "headerMissing"),
        ({"talq-api-version": "3.0"}, False, "/devices", 400, "headerValueNotValid"),
        (VERSION, True, "/nowhere", 400, "genericError"),
        (VERSION, False, "/lamp-types", 400, "genericError"),
        (VERSION, False, f"/devices/{uuid.UUID(int=42)}", 404, "resourceNotFound"),  # stable id
        (VERSION, False, "/devices/not-a-uuid", 400, "parameterValueNotValid"),
    ],
)
async def test_refusals_are_talq_error_bodies(
    gateway: tuple[str, Site], headers: dict[str, str], write: bool, path: str, status: int,
    key: str,
) -> None:  # fmt: skip
    base, _ = gateway
    async with aiohttp.ClientSession() as http, http.get(url(base, path, write=write),
                                                         headers=headers) as response:  # fmt: skip
        body = await response.json()
        assert response.status == status and body[0]["key"] == key, body
        assert response.headers["Cache-Control"] == "no-transform"
        assert "Content-Length" in response.headers
        assert "Transfer-Encoding" not in response.headers


async def test_writes_need_a_request_id_and_a_client_address(gateway: tuple[str, Site]) -> None:
    base, _ = gateway
    async with aiohttp.ClientSession() as http:
        no_id = f"{base}/control-programs?clientAddress={CMS}"
        async with http.post(no_id, json=[PROGRAM], headers=VERSION) as response:
            assert response.status == 400
            assert (await response.json())[0]["key"] == "parameterMissing"
        async with http.get(f"{base}/devices", headers=VERSION) as response:
            assert (await response.json())[0]["key"] == "parameterMissing"
        async with http.get(url(base, "/devices", write=False), headers=VERSION) as response:
            assert response.status == 200
            assert response.headers["talq-api-version"] == "2.7.1"
            devices = await response.json()
            assert {d["name"] for d in devices} >= {"gateway", "lamppost-001", "lamppost-002"}


async def test_the_higher_minor_version_adapts(gateway: tuple[str, Site]) -> None:
    base, _ = gateway
    async with aiohttp.ClientSession() as http:
        for asked, answered in (("2.5.0", "2.5.0"), ("2.7.1", "2.7.1"), ("2.9", "2.7.1")):
            async with http.get(url(base, "/services", write=False),
                                headers={"talq-api-version": asked}) as response:  # fmt: skip
                assert response.status == 200
                assert response.headers["talq-api-version"] == answered


def test_production_mode_needs_its_certificates() -> None:
    import tomllib

    raw = tomllib.loads(SAMPLE.read_text())
    raw["talq"] = {**raw["talq"], "mode": "production"}
    with pytest.raises(ConfigError) as err:
        validate_config(raw, "talq.toml")
    assert any(p.startswith("talq:") and "cert_file" in p for p in err.value.problems)


def _certificates(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, in PEM."""
    now = dt.datetime.now(dt.UTC)

    def make(name: str, issuer: Any, issuer_key: Any, *, ca: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer.subject if issuer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))  # fmt: skip
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(issuer_key or key, hashes.SHA256()), key

    ca, ca_key = make("test CA", None, None, ca=True)
    files = {}
    for name, (cert, key) in {"ca": (ca, ca_key),
                              "server": make("127.0.0.1", ca, ca_key, ca=False),
                              "client": make("cms", ca, ca_key, ca=False)}.items():  # fmt: skip
        files[f"{name}.crt"] = tmp / f"{name}.crt"
        files[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}.key"] = tmp / f"{name}.key"
        files[f"{name}.key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))  # fmt: skip
    return files


async def test_https_with_mutual_tls(tmp_path: Path) -> None:
    files = _certificates(tmp_path)
    async with ModbusStreet(lampposts=1, meters=0) as street:
        port = free_port()
        config = sample_config(tmp_path, street, port=port, cms_uri="http://127.0.0.1:9")
        assert config.talq is not None
        section = config.talq.replace(
            mode="production",
            cert_file=files["server.crt"],
            key_file=files["server.key"],
            ca_file=files["ca.crt"],
        )
        site = Site(config.replace(talq=section))
        ready = asyncio.Event()
        task = asyncio.create_task(serve(site.core, ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            target = f"https://127.0.0.1:{port}/services?clientAddress={CMS}"
            anonymous = ssl.create_default_context(cafile=str(files["ca.crt"]))
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.ClientError):  # no client certificate: no TLS session
                    async with http.get(target, headers=VERSION, ssl=anonymous) as response:
                        await response.read()
                known = ssl.create_default_context(cafile=str(files["ca.crt"]))
                known.load_cert_chain(files["client.crt"], files["client.key"])
                async with http.get(target, headers=VERSION, ssl=known) as response:
                    assert response.status == 200
                    assert {s["name"] for s in await response.json()} >= {"ControlService"}
                plain = f"http://127.0.0.1:{port}/services?clientAddress={CMS}"
                with pytest.raises(aiohttp.ClientError):
                    async with http.get(plain, headers=VERSION) as response:
                        await response.read()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert await wait_for(lambda: task.done(), 5)
