"""Downloads that prove themselves (checksums) and archives unpacked without escaping their folder.

Readers declare their canonical URLs and checksums; this module fetches the first mirror
whose copy passes the reader's check, writes it atomically, and unpacks tar archives with
every member confined to the target directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Callable, Sequence

from ..core.fsio import atomic_write_bytes, remove_stale_temps, staging_dir
from ..errors import InputError

TIMEOUT_S = 60


def download_checked(file_name: str, mirrors: Sequence[str], target: Path,
                     problem: Callable[[bytes, str], str | None], fetch: Callable[[str], bytes] | None = None) -> None:
    """Fetch `file_name` from the first mirror whose copy `problem(data, url)` accepts (returns None).

    The accepted copy is written to `target` atomically; when no mirror serves one, the
    InputError lists each mirror's problem (unreachable, checksum mismatch, ...).
    """
    fetch = fetch or fetch_url
    problems = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + file_name
        try:
            data = fetch(url)
        except (urllib.error.URLError, OSError, ValueError) as e:
            problems.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        reason = problem(data, url)
        if reason is None:
            atomic_write_bytes(target, data)
            return
        problems.append(f"{url}: {reason}")
    raise InputError(f"could not download {file_name}: {'; '.join(problems)}; "
                     f"put the file in {target.parent} or pass --data-dir DIR")


def md5_problem(expected: str) -> Callable[[bytes, str], str | None]:
    """A `download_checked` check: None for a copy whose MD5 is the published `expected`."""
    def problem(data: bytes, url: str) -> str | None:
        digest = hashlib.md5(data).hexdigest()
        return None if digest == expected else f"checksum mismatch (md5 {digest}, published {expected})"
    return problem


def fetch_url(url: str) -> bytes:
    """The body at `url` (http, https or file), with visionflow's User-Agent."""
    request = urllib.request.Request(url, headers={"User-Agent": "visionflow"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return response.read()


def check_md5(path: Path, expected: str) -> None:
    """InputError unless the file's MD5 is `expected` (a published archive's checksum)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise InputError(f"{path}: checksum mismatch (md5 {digest.hexdigest()}, published {expected}): "
                         "a damaged or different download")


class _Refused(Exception):
    """A member that would land outside the target; turned into an InputError naming the archive."""


def extract_archive(archive: Path, destination: Path) -> None:
    """Unpack the .tar(.gz) `archive` into `destination`, refusing members that would land outside it.

    Members go to a staging directory first and each top-level entry is renamed into place
    when complete, so an interrupted extraction leaves nothing half-written behind.
    """
    remove_stale_temps(destination)
    staging = staging_dir(destination, "extract")
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:
                _check_members(tar)
                tar.extractall(staging)
        for entry in staging.iterdir():
            if not (destination / entry.name).exists():
                os.replace(entry, destination / entry.name)
    except _Refused as e:
        raise InputError(f"{archive}: refusing to extract: {e}") from None
    except tarfile.TarError as e:
        member = getattr(getattr(e, "tarinfo", None), "name", None)
        detail = f"refusing to extract {member!r}: {e}" if member else f"not a readable tar archive ({e})"
        raise InputError(f"{archive}: {detail}") from None
    except (EOFError, zlib.error, OSError) as e:
        raise InputError(f"{archive}: not a readable tar archive ({e})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_members(tar: tarfile.TarFile) -> None:
    """The data filter's core rules, for Pythons without it: plain files and folders inside the target."""
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts or not (member.isfile() or member.isdir()):
            raise _Refused(f"member {member.name!r} is a link, a device or outside the target")
