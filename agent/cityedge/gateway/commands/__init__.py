"""Signed commands from the command post: verify, authorise, execute, answer.

The checks run in the order of docs/protocol.md, each with its own result code.
A command that fails a check never reaches a driver. Every command the command
post could have sent just now (verified, fresh, for us, not seen before) gets a
signed result through the outbox plus an audit event. Everything else is what
an outsider can repeat at will — garbage, forgeries, replays, expired or
misaddressed copies — so those answers are rate-limited per kind, and they are
reported as `security.<reason>` events, at most one per kind per window, each
counting what happened since the previous one (nothing goes unreported).
"""

from cityedge.gateway.commands.handler import (
    MAX_VALIDITY,
    REPEATABLE_CODES,
    SECURITY_CODES,
    CommandHandler,
    CommandStats,
    Operation,
)
from cityedge.gateway.commands.replay import ReplayCache
from cityedge.gateway.commands.throttle import SecurityThrottle

__all__ = ["MAX_VALIDITY", "REPEATABLE_CODES", "SECURITY_CODES", "CommandHandler",
           "CommandStats", "Operation", "ReplayCache", "SecurityThrottle"]  # fmt: skip
