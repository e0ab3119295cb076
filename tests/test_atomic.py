"""sdk.atomic: real files — the content, the mode, and old-or-new after a failed write."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityedge.sdk import atomic
from cityedge.sdk.atomic import write_atomic


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_text_and_bytes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, "première\n")
    assert path.read_text(encoding="utf-8") == "première\n"
    write_atomic(path, b"\x00\x01second")
    assert path.read_bytes() == b"\x00\x01second"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left


def test_mode_is_filtered_by_the_umask_unless_exact(tmp_path: Path, umask_022: None) -> None:
    write_atomic(tmp_path / "plain", "x")
    assert mode_of(tmp_path / "plain") == 0o644
    write_atomic(tmp_path / "group", "x", mode=0o660)
    assert mode_of(tmp_path / "group") == 0o640
    os.umask(0o277)  # an odd umask that would leave a key unreadable by its owner
    write_atomic(tmp_path / "gateway.key", "secret", mode=0o600, exact_mode=True)
    assert mode_of(tmp_path / "gateway.key") == 0o600


def test_replacing_takes_the_new_mode(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "trust.json"
    path.write_text("old")
    path.chmod(0o644)
    write_atomic(path, "new", mode=0o600)
    assert path.read_text() == "new" and mode_of(path) == 0o600


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_failure_mid_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "overrides.json"
    write_atomic(path, "old content")
    real_write = os.write
    calls: list[int] = []

    def half_then_full_disk(fd: int, data: memoryview) -> int:
        calls.append(fd)
        if len(calls) > 1:  # the first half reached the temporary file
            raise OSError(28, "No space left on device")
        return real_write(fd, data[: len(data) // 2])

    def fail(*args: object) -> None:
        raise OSError(5, "Input/output error")

    if failing == "write":
        monkeypatch.setattr(os, "write", half_then_full_disk)
    else:
        monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError):
        write_atomic(path, "new content, longer than the old")
    monkeypatch.undo()
    assert path.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["overrides.json"]


def test_a_missing_directory_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "nowhere" / "file", "x")


def test_directory_fsync_is_best_effort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_directories(path: object, flags: int, *args: int) -> int:
        if flags & os.O_DIRECTORY:
            raise OSError(22, "Invalid argument")  # a filesystem that cannot fsync a directory
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_directories)
    write_atomic(tmp_path / "f", "data")
    assert (tmp_path / "f").read_text() == "data"
    atomic.fsync_directory(tmp_path)  # returns, whatever the directory's file system
