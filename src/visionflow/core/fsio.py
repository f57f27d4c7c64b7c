"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..errors import InputError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, fsync the result and rename it over `path`.

    The temporary file lives in the same directory so the rename stays on one file system
    (and is therefore atomic on POSIX).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish_dir(staging: str | os.PathLike, final: str | os.PathLike) -> None:
    """Make a finished directory visible at `final` in one step: fsync its files, then rename it.

    `staging` must be on the same file system (a dot-prefixed sibling, say), so readers see
    no directory or a complete one.  It gets the permissions a new directory would get
    (tempfile.mkdtemp makes it owner-only), and so do its files.  Raises OSError when `final`
    is a non-empty directory already.
    """
    staging, final = Path(staging), Path(final)
    for f in staging.iterdir():
        if f.is_file():
            os.chmod(f, 0o666 & ~_umask())
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
    os.chmod(staging, 0o777 & ~_umask())
    _fsync_dir(staging)
    os.rename(staging, final)
    _fsync_dir(final.parent)


def open_input(path: Path, expected: str, buffering: int = -1) -> BinaryIO:
    """`path` opened for binary reading; when it is missing, a directory or unreadable, an InputError
    naming it and what was `expected` there (such as "a TFRecord file")."""
    try:
        return open(path, "rb", buffering=buffering)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected {expected}") from None
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None
