"""The exit statuses of every `cityedge` command: one table (docs/cli.md), one meaning each."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PROBLEM = 1  # a check warned or failed; the agent or a gateway refused; a message rejected
    BAD_INPUT = 2  # a wrong option or argument, an invalid config or key file
    NO_ANSWER = 3  # the agent's control socket does not answer; no result came in time
    NO_BROKER = 4  # the MQTT broker (or ingest's engine) cannot be reached, or the store
    INTERRUPTED = 130  # Ctrl-C
