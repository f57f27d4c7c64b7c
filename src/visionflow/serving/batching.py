"""Dynamic batching: concurrent requests merged into one runtime call.

Handlers (on the event loop) `submit` their (n, H, W, C) images and await a future; a worker
thread takes the first waiting request, adds every request that is already queued, and runs
them as one batch of at most `max_batch_size` images.  The runtime releases the GIL, so while
a batch runs the event loop parses the next requests, which queue up and form the next batch:
under load batches grow by themselves, and one lone request never waits for company.

With one runtime thread per call, one worker keeps only one core busy with the model.  More
workers (TF Serving's `num_batch_threads`) add cores, but only for full batches: a part-filled
batch starts only when no other batch is collecting or running, so extra workers never split
the queue into the small batches that cost more per image.

`timeout_s` (TF Serving's batch_timeout_micros) bounds how long a part-filled batch may wait
for requests that are still being received (`Arrivals`); it never delays a batch when
nothing else is on its way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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


class BatcherClosed(RuntimeError):
    """Raised by `submit` once the batcher is closed (its version was unloaded)."""


class DynamicBatcher:
    """Runs `run(images) -> {output name: array with one row per image}` on merged requests.

    `on_batch(size, seconds)` is called from the worker after each runtime call (metrics).
    `close()` lets the workers finish every request queued before it, then stop.
    """

    def __init__(self, run: Callable[[np.ndarray], Outputs], max_batch_size: int, timeout_s: float,
                 arrivals: Arrivals, name: str, on_batch: Callable[[int, float], None] | None = None,
                 workers: int = 1) -> None:
        self._run = run
        self._max = max(1, max_batch_size)
        self._timeout = max(0.0, timeout_s)
        self._arrivals = arrivals
        self._on_batch = on_batch
        lock = threading.Lock()
        self._ready = threading.Condition(lock)  # idle workers wait here for a batch they may take
        self._more = threading.Condition(lock)  # the collecting worker waits here for arrivals
        self._jobs: collections.deque[_Job] = collections.deque()
        self._rows = 0  # images in self._jobs
        self._busy = 0  # workers collecting or running a batch
        self._collecting = False
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"batcher-{name}-{k}", daemon=True)
                         for k in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, images: np.ndarray) -> asyncio.Future:
        """Queue (n, H, W, C) uint8 images; the future resolves to their rows of every output."""
        if self._closed:
            raise BatcherClosed("batcher is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._ready:
            self._jobs.append(_Job(images, future, loop))
            self._rows += len(images)
            if self._collecting:
                self._more.notify()
            elif self._takeable():
                self._ready.notify()
        return future

    def close(self) -> None:
        """Stop taking requests; the workers answer every queued request, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
            self._more.notify_all()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (jobs := self._claim()) is not None:
            try:
                self._execute(jobs)
            finally:
                with self._ready:
                    self._busy -= 1
                    if self._takeable():
                        self._ready.notify()

    def _takeable(self) -> bool:
        """Whether an idle worker may start a batch now (call with the lock held).

        A part-filled batch runs only while no other batch is collecting or running: extra
        workers add cores for full batches and never split the queue into small ones, which cost
        more per image (onnxruntime, 1 thread: ~750 µs per image alone, ~350 in batches of 32).
        """
        return bool(self._jobs) and (self._busy == 0 or self._rows >= self._max or self._closed)

    def _claim(self) -> list[_Job] | None:
        """The next batch for this worker, or None once closed with nothing left."""
        with self._ready:
            while True:
                while not self._takeable():
                    if self._closed and not self._jobs:
                        return None
                    self._ready.wait()
                self._busy += 1
                if self._rows < self._max and not self._closed:
                    self._await_arrivals()
                if self._jobs:
                    jobs = self._take()
                    if self._takeable():
                        self._ready.notify()
                    return jobs
                self._busy -= 1  # another worker took them while this one waited

    def _await_arrivals(self) -> None:
        """Hold a part-filled batch open while requests are still being received, up to the timeout."""
        deadline = time.monotonic() + self._timeout
        self._collecting = True
        try:
            while self._rows < self._max and self._arrivals.count > 0 and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._more.wait(remaining)
        finally:
            self._collecting = False

    def _take(self) -> list[_Job]:
        """The first queued request (even one larger than a batch) and those after it that fit."""
        jobs = [self._jobs.popleft()]
        rows = len(jobs[0].images)
        while self._jobs and rows + len(self._jobs[0].images) <= self._max:
            job = self._jobs.popleft()
            jobs.append(job)
            rows += len(job.images)
        self._rows -= rows
        return jobs

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
