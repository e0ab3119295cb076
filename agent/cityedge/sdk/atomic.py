"""Replace a file so that a crash or a power cut leaves the old content or the new, whole.

Durability, in order: a temporary file is created in the same directory (a
rename is atomic only within one filesystem), the data written, the file
fsync'ed, renamed over the target, and the directory fsync'ed so the rename
itself is on disk. When `write_atomic` returns, the new content survives a
power cut; when it raises, the target is untouched and the temporary file gone.

Every state file the agent rewrites goes through here (keys, trust store,
overrides, lighting program, check record): one durability level, not several.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def write_atomic(
    path: Path, data: bytes | str, *, mode: int = 0o666, exact_mode: bool = False
) -> None:
    """Replace `path` with `data` (text is written as UTF-8). Raises OSError.

    `mode` is the new file's permissions, filtered by the process umask as open(2)
    does; with `exact_mode` the file gets exactly `mode` whatever the umask (key
    files: 0o600, readable by their owner even under an odd umask). The parent
    directory must exist.
    """
    payload = data.encode() if isinstance(data, str) else data
    # O_EXCL on an unpredictable name: never write through a file or symlink
    # someone else left in the directory.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, _FLAGS, mode)
    try:
        try:
            if exact_mode:
                os.fchmod(fd, mode)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable. Best effort: some
    filesystems refuse to open or fsync a directory, and the data is already safe."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
