"""Shipped data, installed as the package `cityedge.shipped` (see setup.py).

Modbus and ASCII device profiles (`profiles/`), LoRaWAN device types and codecs
(`lorawan/`), the example and demo configs and the broker's confinement files
(`mosquitto/`). The agent finds them through `importlib.resources`
(`cityedge.sdk.driver.shipped_config_dir`); a config's `gateway.profile_dirs`
names site folders searched first. No code lives here.
"""
