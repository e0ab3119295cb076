"""On-device diagnostics for maintenance crews: `cityedge check` and the support bundle.

Checks are data (`runner.CHECKS`): small async functions that return
`CheckResult(name, status, detail, remedy)`. They work with the agent stopped;
a few (LoRa forwarder, Modbus reads on a shared bus) ask the running agent over
the control socket when it is there. See docs/operations.md.
"""
