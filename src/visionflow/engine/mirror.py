"""A model directory addressed by URL (`--model-dir s3://bucket/runs/cnn`), kept as a local mirror.

Training, evaluation, export and serving all work on a local directory; a URL's contents are
pulled into `$VISIONFLOW_CACHE/modeldirs/<hash of the URL>/` when the model directory is opened,
and the process that writes (rank 0) pushes what changed after every checkpoint and when the run
ends.  What a reader of the URL can rely on:

- each file appears whole or not at all: object stores make one PUT (or a completed multipart
  upload) visible at once; on `file://` the upload goes to a dot-temp renamed over the target;
- `checkpoints/index.json` is pushed last, after the checkpoint files it names, and checkpoints
  older than every step it lists are deleted only after it: whoever resumes, evaluates or exports from the
  URL finds a complete checkpoint, whenever the writer died;
- the other files (config, TensorBoard events, evaluation JSON, plots) are as fresh as the last
  push — up to one checkpoint interval behind the local copy if the writer is killed.

Pulling fetches config, labels, the index and the latest checkpoint only (older checkpoints stay
remote; a checkpoint already mirrored at its size is kept, every other file is fetched again);
a URL with nothing there empties the mirror, so a run deleted there is not resumed from here.  Two writers on one URL are not detected: like a local
directory, one run writes a model directory at a time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from ..core.cache import default_cache_dir
from ..core.remote import fetch_file, put_file, remove_file, url_fs
from ..errors import InputError

INDEX = "checkpoints/index.json"
_CHECKPOINT_FILE = re.compile(r"checkpoints/ckpt-(\d{8})\.(?:state\.)?safetensors")
MAX_FILES = 100_000


def mirror_path(url: str, role: str, cache_dir: Path | None = None) -> Path:
    """Where the mirror of `url` lives: one for the training run, one for readers (evaluate,
    watch, export, predict), so an evaluator polling the URL never rewrites the files of a run
    training into it on the same machine."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:20]
    return (cache_dir or default_cache_dir()) / "modeldirs" / f"{digest}-{role}"


class Mirror:
    """The local copy of the model directory at `url`, pulled on creation; `role` is "train" for
    the run that writes checkpoints into it, "read" otherwise."""

    def __init__(self, url: str, role: str = "read", cache_dir: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.fs, root = url_fs(self.url)
        self.root = root.rstrip("/")
        self.local = mirror_path(self.url, role, cache_dir)
        self._remote: set[str] = set()  # relative paths known to be at the URL
        self._pushed: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) last pushed
        self.pull()

    def _remote_files(self) -> dict[str, int | None]:
        try:
            if not self.fs.exists(self.root):
                return {}
            found = self.fs.find(self.root, detail=True)
        except Exception as e:  # noqa: BLE001 - any backend's listing error is one line
            raise InputError(f"{self.url}: cannot list the model directory ({type(e).__name__}: {e})") from None
        if len(found) > MAX_FILES:
            raise InputError(f"{self.url}: {len(found):,} files, more than a model directory holds ({MAX_FILES:,})")
        files = {}
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            relative = os.path.relpath(path, self.root)
            if not relative.startswith("..") and not Path(relative).name.startswith("."):
                files[relative.replace(os.sep, "/")] = info.get("size")
        return files

    def pull(self, checkpoint_only: bool = False) -> None:
        """Bring the URL's index and latest checkpoint here, and unless `checkpoint_only` (a
        watcher polling for new checkpoints) every other file too.  A URL with nothing there
        empties the mirror; local files the URL lacks are otherwise kept (a writer on this machine
        may not have pushed them yet), and the index decides which checkpoint is read."""
        files = self._remote_files()
        if not files and not checkpoint_only:
            shutil.rmtree(self.local, ignore_errors=True)
        latest = None
        if INDEX in files:
            fetch_file(self.fs, f"{self.root}/{INDEX}", self.local / INDEX, self.url, files[INDEX], False)
            from ..core.fsio import read_json

            latest = read_json(self.local / INDEX).get("latest")
        for relative, size in sorted(files.items()):
            match = _CHECKPOINT_FILE.fullmatch(relative)
            if relative == INDEX or (match and int(match.group(1)) != latest) or (checkpoint_only and not match):
                continue
            # a checkpoint file never changes under its name; anything else may, at any size
            fetch_file(self.fs, f"{self.root}/{relative}", self.local / relative, self.url, size, bool(match))
        self._remote |= set(files)
        for relative in files:  # what came from the URL is not pushed back unless it changes here
            if (self.local / relative).is_file():
                self._pushed[relative] = _stamp(self.local / relative)

    def check_writable(self) -> None:
        """Write and delete a probe object: a URL that cannot be written fails before training."""
        probe = self.local / ".write-probe"
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        remote = f"{self.root}/.visionflow-write-probe-{os.getpid()}"
        try:
            put_file(self.fs, probe, remote, self.url)
            remove_file(self.fs, remote, self.url)
        except (InputError, NotImplementedError, PermissionError) as e:
            raise InputError(f"{self.url}: the model directory cannot be written here ({e})") from None
        finally:
            probe.unlink(missing_ok=True)

    def push(self) -> int:
        """Upload what changed since the last push — checkpoint files, then the rest, the index
        last — then delete remote checkpoints the local directory pruned.  Returns files uploaded."""
        changed = []
        present = set()
        for path in self._local_files():
            relative = path.relative_to(self.local).as_posix()
            present.add(relative)
            if self._pushed.get(relative) != _stamp(path):
                changed.append(relative)
        changed.sort(key=lambda r: (0 if _CHECKPOINT_FILE.fullmatch(r) else 2 if r == INDEX else 1, r))
        for relative in changed:
            path = self.local / relative
            stamp = _stamp(path)
            put_file(self.fs, path, f"{self.root}/{relative}", self.url)
            self._pushed[relative] = stamp
            self._remote.add(relative)
        oldest = self._oldest_listed_step()
        for relative in sorted(self._remote - present):
            match = _CHECKPOINT_FILE.fullmatch(relative)
            if match and oldest is not None and int(match.group(1)) < oldest:
                remove_file(self.fs, f"{self.root}/{relative}", self.url)
                self._remote.discard(relative)
        return len(changed)

    def _oldest_listed_step(self) -> int | None:
        """The oldest step the local index lists: remote checkpoints before it were pruned.  Newer
        ones are never deleted — a writer elsewhere may have pushed them ahead of its index."""
        from ..core.fsio import read_json

        index = self.local / INDEX
        steps = read_json(index).get("steps", []) if index.exists() else []
        return min(steps) if steps else None

    def _local_files(self) -> list[Path]:
        if not self.local.is_dir():
            return []
        return sorted(p for p in self.local.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.local).parts))


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns

