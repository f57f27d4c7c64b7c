"""The versions of one served model: discovery, hot swap, version labels and leases.

A watcher polls the export base.  A new version is loaded and warmed in a worker thread
while the current one keeps serving; only once it is AVAILABLE are versions the policy no
longer wants taken out of rotation, and each of those is closed only after the requests
that hold it (its leases) have finished — or its drain deadline has passed — and its batcher
has drained.  So no request fails during a swap, and the draining happens beside the watcher:
a slow client holding an old version never holds up loading a newer one.  A version that is incomplete (a file missing) is skipped until it is
complete; one that fails to load (corrupt ONNX, a signature that does not fit) is skipped
with a logged error and not retried until its files change.

Version policies, as TF Serving's model_version_policy:
  latest     the newest version that loads (falling back past broken ones)
  all        every version that loads
  specific   the listed versions (those of them that load)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Iterator

from ..errors import InputError
from ..export.exportdir import ExportBase, Fingerprint
from .errors import RequestError, not_found
from .runtime import ServedVersion

log = logging.getLogger("visionflow.serve")

POLICIES = ("latest", "all", "specific")


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise InputError(f"--version-policy {self.kind!r}: choose one of {', '.join(POLICIES)}")
        if (self.kind == "specific") != bool(self.versions):
            raise InputError("--versions N... goes with --version-policy specific (and only with it)")

    def candidates(self, complete: list[int]) -> list[int]:
        """Versions worth trying, newest first."""
        newest_first = sorted(complete, reverse=True)
        return [v for v in newest_first if v in self.versions] if self.kind == "specific" else newest_first


@dataclass
class VersionState:
    """TF Serving's ModelVersionStatus: state START, LOADING, AVAILABLE, UNLOADING or END."""

    state: str
    error: str = ""

    def to_dict(self, version: int) -> dict:
        return {"version": str(version), "state": self.state,
                "status": {"error_code": "UNKNOWN" if self.error else "OK", "error_message": self.error}}


Loader = Callable[[int], ServedVersion]


class ModelVersions:
    def __init__(self, name: str, base: ExportBase, policy: VersionPolicy, load: Loader,
                 fixed_labels: dict[str, int] | None = None,
                 on_change: Callable[[int, VersionState], None] | None = None, drain_seconds: float = 35.0) -> None:
        self.name = name
        self.base = base
        self.policy = policy
        self._load = load
        self._fixed_labels = dict(fixed_labels or {})
        self._file_labels: dict[str, int] = {}
        self._on_change = on_change or (lambda version, state: None)
        self.available: dict[int, ServedVersion] = {}
        self.states: dict[int, VersionState] = {}
        self._failed: dict[int, Fingerprint] = {}
        self._said: set[tuple] = set()
        self._lock = asyncio.Lock()
        self.drain_seconds = drain_seconds
        self._retiring: set[asyncio.Task] = set()

    @property
    def labels(self) -> dict[str, int]:
        return {**self._file_labels, **self._fixed_labels}

    # -- requests ----------------------------------------------------------------------------

    def resolve(self, version: int | None = None, label: str | None = None) -> ServedVersion:
        """The version a request names (by number or label), else the newest available one."""
        if label is not None:
            if label not in self.labels:
                raise not_found(f"model {self.name!r} has no version label {label!r}")
            version = self.labels[label]
        if version is None:
            if not self.available:
                raise RequestError(503, f"model {self.name!r} has no version available yet")
            return self.available[max(self.available)]
        served = self.available.get(version)
        if served is None:
            state = self.states.get(version)
            why = f" (state {state.state}{': ' + state.error if state.error else ''})" if state else ""
            raise not_found(f"version {version} of model {self.name!r} is not available{why}")
        return served

    @contextlib.contextmanager
    def lease(self, version: int | None = None, label: str | None = None) -> Iterator[ServedVersion]:
        """Hold a version for the length of a request: it is not closed under the request."""
        served = self.resolve(version, label)
        served.leases += 1
        try:
            yield served
        finally:
            served.leases -= 1

    def status(self, version: int | None = None, label: str | None = None) -> list[dict]:
        """model_version_status entries, newest first (one entry when a version is named)."""
        if label is not None:
            version = self.resolve(label=label).version
        if version is not None:
            if version not in self.states:
                raise not_found(f"version {version} of model {self.name!r} is not known to this server")
            return [self.states[version].to_dict(version)]
        return [self.states[v].to_dict(v) for v in sorted(self.states, reverse=True)]

    # -- watching ----------------------------------------------------------------------------

    async def watch(self, poll_seconds: float) -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await self.refresh()
            except Exception:  # the watcher must outlive any one bad poll
                log.exception("model %s: checking %s failed", self.name, self.base.path)

    async def refresh(self) -> None:
        """One poll: read labels, load what the policy wants, then retire what it no longer wants."""
        async with self._lock:
            self._read_labels()
            present = self.base.versions()
            wanted: list[int] = []
            for version in self.policy.candidates(self._complete(present)):
                if version in self.available or await self._try_load(version):
                    wanted.append(version)
                    if self.policy.kind == "latest":
                        break
            for version in [v for v in self.available if v not in wanted]:
                self._retire(version)
            for version in [v for v in self.states if v not in present and v not in self.available]:
                del self.states[version]
                self._failed.pop(version, None)

    async def close(self) -> None:
        async with self._lock:
            for version in list(self.available):
                self._retire(version)
        await asyncio.gather(*self._retiring)

    def _complete(self, present: list[int]) -> list[int]:
        out = []
        for version in present:
            missing = self.base.missing_files(version)
            if missing:
                self._say_once(("incomplete", version, tuple(missing)), logging.WARNING,
                               "model %s: version %d is incomplete (missing %s); skipped until it is complete",
                               self.name, version, ", ".join(missing))
            elif self._failed.get(version) != self.base.fingerprint(version):
                out.append(version)
        return out

    async def _try_load(self, version: int) -> bool:
        fingerprint = self.base.fingerprint(version)
        self._set_state(version, VersionState("LOADING"))
        try:
            served = await asyncio.to_thread(self._load, version)
        except Exception as e:  # any failure of a third-party loader means: this version is broken
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self._failed[version] = fingerprint
            log.error("model %s: version %d not loaded (serving %s): %s", self.name, version,
                      _versions_text(self.available), message)
            self._set_state(version, VersionState("END", message))
            return False
        self.available[version] = served
        self._failed.pop(version, None)
        log.info("model %s: version %d is AVAILABLE (%s)", self.name, version, served.runner.description)
        self._set_state(version, VersionState("AVAILABLE"))
        return True

    def _retire(self, version: int) -> None:
        """Take `version` out of rotation now; close it in the background once drained."""
        served = self.available.pop(version)
        self._set_state(version, VersionState("UNLOADING"))
        task = asyncio.get_running_loop().create_task(self._drain(served))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _drain(self, served: ServedVersion) -> None:
        """Wait for the requests holding `served` (at most `drain_seconds`), then close it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        while served.leases and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if served.leases:
            log.warning("model %s: version %d closed with %d request(s) still holding it (drain deadline %g s)",
                        self.name, served.version, served.leases, self.drain_seconds)
        served.batcher.close()
        await asyncio.to_thread(served.batcher.join)
        if served.version not in self.available:  # not loaded again meanwhile
            self._set_state(served.version, VersionState("END"))
        log.info("model %s: version %d unloaded", self.name, served.version)

    def _set_state(self, version: int, state: VersionState) -> None:
        self.states[version] = state
        self._on_change(version, state)

    def _read_labels(self) -> None:
        try:
            self._file_labels = self.base.read_version_labels()
        except InputError as e:
            self._say_once(("labels", str(e)), logging.ERROR, "model %s: %s (keeping the previous labels)",
                           self.name, e)

    def _say_once(self, key: tuple, level: int, message: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, message, *args)


def _versions_text(available: dict[int, ServedVersion]) -> str:
    return "version " + ", ".join(map(str, sorted(available))) if available else "nothing yet"
