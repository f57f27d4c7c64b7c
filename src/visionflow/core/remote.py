"""Files addressed by URL through fsspec (`s3://`, `gs://`, `http(s)://`, `memory://`, `file://`, …):
the file system of a URL, and one file's copy down or up, each with retries, each atomic.

fsspec and its backends (s3fs, gcsfs, aiohttp) are imported only when a URL is used: install
`visionflow[cloud]`.  Backends raise their own exception types (botocore's, aiohttp's, …), so every
error but a missing file is retried ATTEMPTS times and then reported as one line naming the URL.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from .fsio import atomic_write

ATTEMPTS = 4  # per file: the first try and three retries, 0.5 s, 1 s, 2 s apart
CHUNK = 4 << 20


def is_url(spec: str | os.PathLike | None) -> bool:
    return spec is not None and "://" in os.fspath(spec)


def url_fs(url: str) -> tuple[Any, str]:
    """(fsspec file system, path within it) of `url`; a one-line InputError when none can serve it."""
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{url}: URLs need fsspec (pip install 'visionflow[cloud]')") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise InputError(f"{url}: no fsspec backend for this URL ({e}); pip install 'visionflow[cloud]'") from None


def is_local_fs(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _retrying(what: str, url: str, action) -> Any:
    for attempt in range(ATTEMPTS):
        try:
            return action()
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001 - every backend's transient error is retried
            if attempt == ATTEMPTS - 1:
                raise InputError(f"{url}: {what} failed {ATTEMPTS} times ({type(e).__name__}: {e})") from None
            time.sleep(0.5 * 2 ** attempt)


def fetch_file(fs: Any, remote: str, local: Path, url: str, size: int | None = None,
               keep_same_size: bool = True) -> None:
    """Copy the remote file `remote` to `local` atomically.  A local copy of the same size is kept
    when `keep_same_size` (files that never change under one name: shards, checkpoints).

    `size` is the remote size when the caller's listing already gave it (one request fewer)."""
    if size is None:
        try:
            size = fs.size(remote)
        except Exception:  # noqa: BLE001 - a backend that cannot tell the size: fetch again
            size = None
    if keep_same_size and local.exists() and size is not None and local.stat().st_size == size:
        return
    local.parent.mkdir(parents=True, exist_ok=True)

    def copy() -> None:
        def write(tmp: Path) -> None:
            with fs.open(remote, "rb") as source, open(tmp, "wb") as sink:
                while chunk := source.read(CHUNK):
                    sink.write(chunk)
        atomic_write(local, write)
        if size is not None and local.stat().st_size != size:
            raise OSError(f"got {local.stat().st_size:,} bytes of {size:,}")

    try:
        _retrying(f"reading {remote}", url, copy)
    except FileNotFoundError:
        raise InputError(f"{url}: {remote} disappeared while being read") from None


def put_file(fs: Any, local: Path, remote: str, url: str) -> None:
    """Upload `local` to `remote` so that a reader sees the old object or the new one, whole.

    On object stores one PUT (or a completed multipart upload) is atomic by itself; on a local
    file system (`file://`) the bytes go to a dot-temp beside the target and are renamed over it.
    """
    def put() -> None:
        if is_local_fs(fs):
            parent, name = remote.rsplit("/", 1) if "/" in remote else ("", remote)
            fs.makedirs(parent or ".", exist_ok=True)
            temp = f"{parent}/.{name}.{os.getpid()}.upload.tmp"
            fs.put_file(str(local), temp)
            fs.mv(temp, remote)
        else:
            fs.put_file(str(local), remote)

    try:
        _retrying(f"writing {remote}", url, put)
    except FileNotFoundError as e:
        raise InputError(f"{url}: cannot write {remote} ({e})") from None


def remove_file(fs: Any, remote: str, url: str) -> None:
    """Delete one remote file (gone already is fine)."""
    try:
        _retrying(f"deleting {remote}", url, lambda: fs.rm_file(remote))
    except FileNotFoundError:
        pass
