"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every temporary file or staging directory is a dot-file named `.NAME.PID.RANDOM.tmp` beside
its target, so a write killed half-way leaves nothing a reader takes for data, and
`remove_stale_temps` can later remove exactly those whose writing process is gone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

#: `.NAME.PID.RANDOM.tmp` (this version) or `.NAME.RANDOM.tmp` (0.1.0, no PID).
_TEMP = re.compile(r"\..+?\.(?:(\d+)\.)?[A-Za-z0-9_]{6,}\.tmp")
#: A temp file without a PID is removed once it is this old (seconds): its writer is long gone.
LEGACY_TEMP_AGE_S = 24 * 3600

from ..errors import InputError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, fsync the result and rename it over `path`.

    The temporary file lives in the same directory so the rename stays on one file system
    (and is therefore atomic on POSIX).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
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


def _temp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}."


def staging_dir(parent: str | os.PathLike, name: str) -> Path:
    """A new, empty dot-directory in `parent` to build `name` in before `publish_dir` renames it."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(name), suffix=".tmp", dir=parent))


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the temp files and staging directories in `directory` left by writers that died
    (their process is gone; without a PID, older than a day).  Returns what was removed.

    A live writer's temps are never touched, so this is safe beside a running training,
    export or evaluation that writes into the same directory.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.fullmatch(entry.name)
        if match is None:
            continue
        pid = match.group(1)
        if pid is not None and _alive(int(pid)):
            continue
        try:
            if pid is None and time.time() - entry.stat(follow_symlinks=False).st_mtime < LEGACY_TEMP_AGE_S:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


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


def read_text(path: Path, expected: str = "UTF-8 text") -> str:
    """The file's text; InputError naming `path` when it is missing, unreadable or not UTF-8."""
    with open_input(path, expected) as handle:
        try:
            data = handle.read()
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def read_json(path: Path) -> Any:
    """The JSON document in `path`; InputError naming it when unreadable, not UTF-8 or not JSON."""
    text = read_text(path, "a JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
