"""On-device diagnostics for maintenance crews: `cityedge check` and the support bundle.

Checks are data (`runner.CHECKS`): small async functions that return
`CheckResult(name, status, detail, remedy)` (`cityedge.sdk.checks`). Those that
know a protocol are the drivers' own (`cityedge.drivers.<kind>.checks`, found
through the registry). They work with the agent stopped; a few ask the running
agent over the control socket when it is there. See docs/operations.md.
"""
