"""The maintenance page and /metrics, served by a running agent on loopback; the page
looked at by a real headless Chromium at a phone's size."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cityedge.gateway.config import ConfigError
from cityedge.gateway.maintenance import MaintenancePage, parse_address
from cityedge.gateway.maintenance.http import BadRequest, parse_head
from tests.support.agent_process import ROOT
from tests.technician.conftest import Live

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
async def page(live: Live) -> AsyncIterator[MaintenancePage]:
    served = MaintenancePage(live.agent, "127.0.0.1:0", control=live.server)
    task = asyncio.create_task(served.run())
    try:
        await asyncio.wait_for(served.listening.wait(), 10)
        yield served
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def http(page: MaintenancePage, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", page.bound_port), 10
    )
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode()


async def wait_devices_up(live: Live) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(h.state == "up" for h in live.agent.device_health()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError([h.state for h in live.agent.device_health()])


async def test_the_page_shows_health_devices_and_the_last_check(
    live: Live, page: MaintenancePage
) -> None:
    await wait_devices_up(live)
    await live.ask(
        "check.record",
        ts=time.time(),
        results=[
            {
                "name": "broker.tls",
                "status": "fail",
                "detail": "certificate <expired>",
                "remedy": "renew it",
            },
        ],
    )
    status, headers, body = await http(page, get("/"))
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    html = body.decode()
    assert '<meta name=viewport content="width=device-width,initial-scale=1">' in html
    assert "lamppost-001" in html and "lamppost-002" in html
    assert "gw-tech" in html and "town-07" in html
    assert "certificate &lt;expired&gt;" in html  # escaped, never markup
    assert "<script" not in html and "http://" not in html and "https://" not in html


async def test_metrics_are_prometheus_text_from_the_agents_state(
    live: Live, page: MaintenancePage
) -> None:
    await wait_devices_up(live)
    status, headers, body = await http(page, get("/metrics"))
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    up = {s.labels["device"]: s.value for s in families["cityedge_device_up"].samples}
    assert up == {"lamppost-001": 1.0, "lamppost-002": 1.0}
    states = {s.labels["state"]: s.value for s in families["cityedge_uplink_state"].samples}
    assert sum(states.values()) == 1.0
    assert {s.labels["priority"] for s in families["cityedge_outbox_rows"].samples} == {
        "telemetry",
        "event",
        "alarm",
    }
    requests = families["cityedge_device_requests"].samples
    assert all(s.value > 0 for s in requests if s.name.endswith("_total"))
    assert families["cityedge_clock_synchronised"].samples[0].value == 1.0
    assert "cityedge_task_running" in families and "cityedge_control_requests" in families


async def test_the_responder_answers_only_what_it_should(page: MaintenancePage) -> None:
    status, headers, body = await http(page, get("/", "POST"))
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert (await http(page, get("/etc/passwd")))[0] == 404
    status, headers, body = await http(page, get("/healthz", "HEAD"))
    assert status == 200 and body == b"" and headers["Content-Length"] == "3"
    assert (await http(page, b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"))[0] == 431
    assert (await http(page, b"NONSENSE\r\n\r\n"))[0] == 400
    body_sent = b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    assert (await http(page, body_sent))[0] == 400
    page.responder.head_timeout = 0.2
    assert (await http(page, b"GET / HTTP/1.1\r\n"))[0] == 408  # a head that never ends
    assert page.responder.served[404] == 1


def test_addresses_are_checked_with_their_key() -> None:
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("[::1]:9100") == ("::1", 9100)
    for bad in ("8080", "127.0.0.1", "host:99999", "::1:80", ":80", "[x]:80"):
        with pytest.raises(ConfigError, match=r"control\.maintenance_address: "):
            parse_address(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_request_heads_of_any_bytes_are_parsed_or_refused(head: bytes) -> None:
    try:
        request = parse_head(head)
    except BadRequest as exc:
        assert exc.status in (400, 405)
    else:
        assert request.method in ("GET", "HEAD") and request.path.startswith("/")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (scripts/setup.sh installs it with "
    "CITYEDGE_EXTRA_APT=chromium)",
)
async def test_a_phone_sized_headless_chromium_sees_the_devices(
    live: Live, page: MaintenancePage, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    await wait_devices_up(live)
    url = f"http://127.0.0.1:{page.bound_port}/"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "maintenance-page.png"
    screenshot.unlink(missing_ok=True)
    common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=412,915",
    ]

    async def chromium(*args: str, profile: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *common,
            f"--user-data-dir={tmp_path / profile}",
            *args,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 90)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode == 0
        return out

    dom = (await chromium("--dump-dom", profile="dom")).decode()
    assert 'id="devices"' in dom
    for name in ("lamppost-001", "lamppost-002"):
        assert f'id="device-{name}"' in dom
    await chromium(f"--screenshot={screenshot}", profile="shot")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
