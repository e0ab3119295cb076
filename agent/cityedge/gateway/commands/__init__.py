"""Signed commands from the command post: verify, authorise, execute, answer.

The checks run in the order of docs/protocol.md §4.1, each with its own result
code. A command that fails a check never reaches a driver. Every command the
command post could have sent just now (verified, well formed, for us, fresh,
not seen before) gets a signed result through the outbox plus an audit event.
Everything else is what an outsider can repeat at will — garbage, forgeries,
replays, expired or misaddressed copies — so those answers are rate-limited per
code, and they are reported as `security.<code>` events, at most one per code
and reason per window, each counting what happened since the previous one
(nothing goes unreported). Every result names the payload it answers by digest.
"""

from cityedge.gateway.commands.handler import (
    DEFAULT_CLOCK_ALLOWANCE,
    MAX_VALIDITY,
    REPEATABLE_CODES,
    SECURITY_CODES,
    CommandHandler,
    CommandStats,
)
from cityedge.gateway.commands.operations import OPERATIONS, Operation
from cityedge.gateway.commands.replay import ReplayCache
from cityedge.gateway.commands.throttle import SecurityThrottle

__all__ = ["DEFAULT_CLOCK_ALLOWANCE", "MAX_VALIDITY", "OPERATIONS", "REPEATABLE_CODES",
           "SECURITY_CODES", "CommandHandler", "CommandStats", "Operation", "ReplayCache",
           "SecurityThrottle"]  # fmt: skip
