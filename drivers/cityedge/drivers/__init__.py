"""Protocol drivers, one package per protocol family (see agent/driver.py for the contract)."""
