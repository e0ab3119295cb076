"""TOML files a driver validates (profiles, device types), read once while unchanged.

One place turns an unreadable or malformed file into problem lines, raised as
the caller's own error type, and caches the validated result by the file's
modification time and size: a config check, and the driver started after it,
do not parse every profile twice, and an edited file is read again.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Parse = Callable[[Mapping[str, Any], Path], T]
"""Validates a file's table (raising the caller's error) and returns what it describes."""

Problem = Callable[[str, list[str]], Exception]
"""The caller's error, built from the file's name and its problem lines."""


class TomlFiles(Generic[T]):
    """Parsed and validated TOML files, cached while each file is unchanged."""

    def __init__(self, parse: Parse[T], problem: Problem) -> None:
        self._parse = parse
        self._problem = problem
        self._cache: dict[Path, tuple[tuple[int, int], T]] = {}

    def load(self, path: Path) -> T:
        """Read and validate one file; the caller's error names it and what is wrong."""
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            cached = self._cache.get(path)
            if cached and cached[0] == key:
                return cached[1]
            data = path.read_bytes()
        except OSError as exc:
            raise self._problem(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise self._problem(str(path), [f"not UTF-8 text: {exc.reason}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise self._problem(str(path), [f"TOML syntax error: {exc}"]) from None
        parsed = self._parse(raw, path)
        self._cache[path] = (key, parsed)
        return parsed
