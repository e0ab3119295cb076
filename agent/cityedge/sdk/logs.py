"""structlog set-up: JSON lines under systemd or in a pipe, readable columns on a terminal;
and `Throttled`, the one way a log event that can come in floods is kept bounded."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    level: str = "info", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    """Route structlog (and the stdlib loggers of our libraries) to stderr.

    `auto` picks JSON when stderr is not a terminal: journald and log shippers
    then get one parseable object per line.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (pymodbus, paho) log through stdlib logging: keep them quiet but visible.
    logging.basicConfig(
        level=max(_LEVELS[level], logging.WARNING),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


REPEAT_INTERVAL = 60.0
"""Seconds over which repeats of a throttled log event are counted, not logged."""

MAX_KEYS = 64  # distinct keys a throttle follows; beyond, they share one (`other`)


@dataclass
class _Spell:
    since: float  # clock time of the last line logged for this key
    repeated: int = 0  # occurrences counted since, not logged


class Throttled:
    """One log event that may come in floods (refused radio frames, datagrams from
    strangers, commands shed): the first occurrence of each key is logged at `level`,
    the next ones within `interval` s are only counted, and the next line logged for
    that key says how many were (`repeated`, over `over_s`); the key is logged as
    `key_field`. `flush()` logs the counts of spells that ended without another
    occurrence; a periodic task of the owner calls it. The owner's counters count
    every occurrence: the log is the loud part, not the record.

    Keys are reasons (a bounded vocabulary), never what a sender chose: an address
    or an EUI as key would let a flood grow the table (capped at MAX_KEYS anyway).
    """

    def __init__(
        self,
        logger: Any,
        event: str,
        *,
        level: Literal["info", "warning", "error"] = "warning",
        interval: float = REPEAT_INTERVAL,
        key_field: str = "reason",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.key_field = key_field
        self.event = event
        self.level = level
        self.interval = interval
        self.clock = clock
        self.total = 0  # every occurrence, logged or not
        self._spells: dict[str, _Spell] = {}

    def __call__(self, key: str = "", **fields: Any) -> bool:
        """Note one occurrence; True when it was logged."""
        self.total += 1
        now = self.clock()
        if key not in self._spells and len(self._spells) >= MAX_KEYS:
            key = "other"
        spell = self._spells.get(key)
        if spell is not None and now - spell.since < self.interval:
            spell.repeated += 1
            return False
        if spell is not None and spell.repeated:
            fields = {**fields, "repeated": spell.repeated, "over_s": round(now - spell.since, 1)}
        self._spells[key] = _Spell(now)
        getattr(self.logger, self.level)(self.event, **{self.key_field: key, **fields})
        return True

    def flush(self) -> None:
        """Log the count of each spell whose interval is over and that counted repeats."""
        now = self.clock()
        for key, spell in self._spells.items():
            if spell.repeated and now - spell.since >= self.interval:
                getattr(self.logger, self.level)(
                    self.event, **{self.key_field: key}, repeated=spell.repeated,
                    over_s=round(now - spell.since, 1),
                )  # fmt: skip
                self._spells[key] = _Spell(now)
