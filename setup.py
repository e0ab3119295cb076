"""Package discovery for setuptools; everything else is in pyproject.toml.

Two source roots share the `cityedge` namespace (`agent/` and `drivers/`, no
`cityedge/__init__.py`), and the repository's `config/` folder (device profiles,
LoRaWAN device types, example configs) installs as the data package
`cityedge.shipped`, which the agent finds through `importlib.resources`
(`cityedge.sdk.driver.shipped_config_dir`). pyproject.toml cannot map a folder
onto a package name that automatic discovery did not find, hence this file.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOTS = ("agent", "drivers")
SHIPPED = ("cityedge.shipped", "config")

packages: list[str] = []
package_dir: dict[str, str] = {}
for root in ROOTS:
    found = find_namespace_packages(where=root, include=["cityedge.*"])
    packages += found
    package_dir.update({name: str(Path(root, *name.split("."))) for name in found})
packages.append(SHIPPED[0])
package_dir[SHIPPED[0]] = SHIPPED[1]

setup(packages=packages, package_dir=package_dir)
