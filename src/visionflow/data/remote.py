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
from pathlib import Path

from ..core.cache import default_cache_dir
from ..core.remote import fetch_file, is_url, url_fs
from ..errors import InputError

__all__ = ["MAX_FILES", "is_url", "localize"]

MAX_FILES = 200_000


def localize(url: str, cache_dir: Path | None = None) -> Path:
    """The local copy of `url` (a directory, a glob or one file), fetched as needed."""
    fs, root = url_fs(url)
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
        fetch_file(fs, remote, target / relative, url)
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
