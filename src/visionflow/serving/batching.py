"""Dynamic batching: concurrent requests merged into one runtime call.

Handlers (on the event loop) `submit` their (n, H, W, C) images and await a future; each of
a served version's worker threads (TF Serving's `num_batch_threads`) takes the first waiting
request, adds every request that is already queued, and runs them as one batch of at most
`max_batch_size` images.  The runtime releases the GIL, so while batches run the event loop
parses the next requests, which queue up and form the next batches: under load batches grow
by themselves, and one lone request never waits for company.  With one runtime thread per
call, one worker can keep only one core busy with the model; more workers let the model use
every core the HTTP handling leaves free.

`timeout_s` (TF Serving's batch_timeout_micros) bounds how long a part-filled batch may wait
for requests that are still being received (`Arrivals`); it never delays a batch when
nothing else is on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

Outputs = dict[str, np.ndarray]


class Arrivals:
    """How many inference requests are between arrival and `submit` (reading or decoding their body).

    Written on the event loop thread only; batch workers read it (an int read is atomic).
    """

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


@dataclass
class _Job:
    images: np.ndarray
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class DynamicBatcher:
    """Runs `run(images) -> {output name: array with one row per image}` on merged requests.

    `on_batch(size, seconds)` is called from the worker after each runtime call (metrics).
    `close()` lets the worker finish every request queued before it, then stop.
    """

    def __init__(self, run: Callable[[np.ndarray], Outputs], max_batch_size: int, timeout_s: float,
                 arrivals: Arrivals, name: str, on_batch: Callable[[int, float], None] | None = None,
                 workers: int = 1) -> None:
        self._run = run
        self._max = max(1, max_batch_size)
        self._timeout = max(0.0, timeout_s)
        self._arrivals = arrivals
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"batcher-{name}-{k}", daemon=True)
                         for k in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, images: np.ndarray) -> asyncio.Future:
        """Queue (n, H, W, C) uint8 images; the future resolves to their rows of every output."""
        if self._closed:
            raise RuntimeError("batcher is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(images, future, loop))
        return future

    def close(self) -> None:
        """Stop taking requests; each worker stops at a close sentinel, queued after every request."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        carry: _Job | None = None
        stopping = False
        while not stopping:
            first = carry or self._queue.get()
            if first is None:
                return
            jobs, carry, stopping = self._collect(first)
            self._execute(jobs)

    def _collect(self, first: _Job) -> tuple[list[_Job], _Job | None, bool]:
        """`first` plus whatever fits; then the job that did not fit (if any) and whether this worker's
        close sentinel was reached."""
        jobs, rows = [first], len(first.images)
        deadline = time.monotonic() + self._timeout
        while rows < self._max:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if self._arrivals.count <= 0 or remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                return jobs, None, True
            if rows + len(job.images) > self._max:
                return jobs, job, False
            jobs.append(job)
            rows += len(job.images)
        return jobs, None, False

    def _execute(self, jobs: list[_Job]) -> None:
        images = jobs[0].images if len(jobs) == 1 else np.concatenate([j.images for j in jobs])
        start = time.perf_counter()
        try:
            outputs = self._run(images)
        except Exception as e:  # a runtime failure fails exactly the requests of this batch
            jobs[0].loop.call_soon_threadsafe(_fail, jobs, e)
            return
        if self._on_batch is not None:
            self._on_batch(len(images), time.perf_counter() - start)
        results, offset = [], 0
        for job in jobs:
            n = len(job.images)
            results.append({name: array[offset : offset + n] for name, array in outputs.items()})
            offset += n
        jobs[0].loop.call_soon_threadsafe(_deliver, jobs, results)


def _deliver(jobs: list[_Job], results: list[Outputs]) -> None:
    for job, result in zip(jobs, results):
        if not job.future.done():
            job.future.set_result(result)


def _fail(jobs: list[_Job], error: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)
