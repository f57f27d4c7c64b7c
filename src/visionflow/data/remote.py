"""Data addressed by URL: `--data-dir s3://bucket/cifar10/`, `gs://…`, `https://host/shards/`,
`memory://…`, `file:///…` — anything fsspec reads (its real backends: s3fs, gcsfs, HTTP through
aiohttp; install `visionflow[cloud]`).

A URL is brought into the cache one file at a time (shard by shard), each with retries and
written atomically, and skipped when a copy of the same size is there already; the readers then
read the local copy, so every reader — TFRecord shards, CIFAR's files, image folders — takes a
URL the same way.  What is copied: every file under a directory URL (or the files a glob URL
matches, or the one file a file URL names), at most MAX_FILES of them.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ..core.cache import default_cache_dir
from ..core.fsio import atomic_write
from ..errors import InputError

MAX_FILES = 200_000
ATTEMPTS = 4  # per file: the first try and three retries, 0.5 s, 1 s, 2 s apart
CHUNK = 4 << 20


def is_url(spec: str | os.PathLike | None) -> bool:
    return spec is not None and "://" in os.fspath(spec)


def localize(url: str, cache_dir: Path | None = None) -> Path:
    """The local copy of `url` (a directory, a glob or one file), fetched as needed."""
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{url}: reading URLs needs fsspec (pip install 'visionflow[cloud]')") from None
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise InputError(f"{url}: no fsspec backend for this URL ({e}); pip install 'visionflow[cloud]'") from None
    target = (cache_dir or default_cache_dir()) / "remote" / hashlib.sha256(url.encode()).hexdigest()[:20]
    files = _listing(fs, root, url)
    if len(files) > MAX_FILES:
        raise InputError(f"{url}: {len(files):,} files, more than the {MAX_FILES:,} a dataset URL may hold")
    base = root.rstrip("/")
    single = len(files) == 1 and files[0].rstrip("/") == base
    for remote in files:
        relative = Path(remote).name if single or "*" in root else os.path.relpath(remote, base)
        if relative.startswith(".."):
            relative = Path(remote).name
        _fetch(fs, remote, target / relative, url)
    return target / Path(files[0]).name if single else target


def _listing(fs, root: str, url: str) -> list[str]:
    try:
        if any(ch in root for ch in "*?["):
            files = sorted(fs.glob(root))
        elif fs.isdir(root):
            files = sorted(p for p in fs.find(root) if not p.endswith("/"))
        elif fs.exists(root):
            files = [root]
        else:
            files = []
    except Exception as e:  # noqa: BLE001 - any backend's listing error becomes one line
        raise InputError(f"{url}: cannot list ({type(e).__name__}: {e})") from None
    if not files:
        raise InputError(f"{url}: no such file or directory, or nothing in it")
    return files


def _fetch(fs, remote: str, local: Path, url: str) -> None:
    """Copy one remote file to `local` atomically, retrying transient errors; skip a same-size copy."""
    try:
        size = fs.size(remote)
    except Exception:  # a backend that cannot tell the size: the copy is fetched again
        size = None
    if local.exists() and size is not None and local.stat().st_size == size:
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(ATTEMPTS):
        try:
            def write(tmp: Path) -> None:
                with fs.open(remote, "rb") as source, open(tmp, "wb") as sink:
                    while chunk := source.read(CHUNK):
                        sink.write(chunk)
            atomic_write(local, write)
            if size is not None and local.stat().st_size != size:
                raise OSError(f"got {local.stat().st_size:,} bytes of {size:,}")
            return
        except FileNotFoundError:
            raise InputError(f"{url}: {remote} disappeared while being read") from None
        except Exception as e:  # backends raise their own errors (aiohttp's, botocore's): retry them all
            if attempt == ATTEMPTS - 1:
                raise InputError(f"{url}: reading {remote} failed {ATTEMPTS} times ({e})") from None
            time.sleep(0.5 * 2 ** attempt)
