"""`cityedge check`'s BLE group: is each configured Bluetooth adapter there?

Asked of sysfs, not of BlueZ: it answers without D-Bus and without the agent.
"""

from __future__ import annotations

from collections.abc import Sequence

from cityedge.drivers.ble.config import Section
from cityedge.sdk.checks import CheckEnv, CheckResult, fail, ok


async def checks(sections: Sequence[Section], ctx: CheckEnv) -> list[CheckResult]:
    results = []
    for i, section in enumerate(sections):
        adapter = str(getattr(section, "adapter", "hci0"))
        path = ctx.sysfs / "class" / "bluetooth" / adapter
        name = f"ble.{adapter}"
        if path.exists():
            results.append(ok(name, f"Bluetooth adapter {adapter} present"))
        else:
            results.append(
                fail(
                    name,
                    f"Bluetooth adapter {adapter} not found (drivers.ble[{i}].adapter)",
                    "plug in or enable the adapter (`rfkill unblock bluetooth`, "
                    f"`systemctl status bluetooth`), or fix drivers.ble[{i}].adapter",
                )
            )
    return results
