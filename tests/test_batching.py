"""The dynamic batcher on its own: rows go back to the request they came from, several workers
run batches at the same time, and closing finishes every queued request."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from visionflow.serving.batching import Arrivals, DynamicBatcher


class SlowSums:
    """A runtime stand-in that takes `seconds` per call (sleeping, so the GIL is free) and returns
    each image's pixel sum: enough to tell which rows came from which request."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[tuple[str, float, float, int]] = []
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        time.sleep(self.seconds)
        with self._lock:
            self.calls.append((threading.current_thread().name, start, time.perf_counter(), len(images)))
        return {"sums": images.reshape(len(images), -1).sum(1, dtype=np.int64)}


def submit_all(batcher: DynamicBatcher, requests: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    async def main() -> list[dict[str, np.ndarray]]:
        return list(await asyncio.gather(*(batcher.submit(images) for images in requests)))

    return asyncio.run(main())


def images_of(sizes: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8) for n in sizes]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_request_gets_its_own_rows(workers):
    run = SlowSums(0.002)
    batcher = DynamicBatcher(run, max_batch_size=8, timeout_s=0.0, arrivals=Arrivals(), name="t", workers=workers)
    requests = images_of([1, 3, 8, 2, 5, 1, 1, 7, 4] * 4)
    replies = submit_all(batcher, requests)
    for images, reply in zip(requests, replies):
        np.testing.assert_array_equal(reply["sums"], images.reshape(len(images), -1).sum(1))
    assert max(n for *_, n in run.calls) <= 8
    assert sum(n for *_, n in run.calls) == sum(map(len, requests))
    batcher.close()
    batcher.join(5)


def test_two_workers_run_two_batches_at_once():
    run = SlowSums(0.2)
    batcher = DynamicBatcher(run, max_batch_size=4, timeout_s=0.0, arrivals=Arrivals(), name="t", workers=2)
    started = time.perf_counter()
    submit_all(batcher, images_of([4, 4]))  # two full batches: one per worker
    elapsed = time.perf_counter() - started
    (name_a, start_a, end_a, _), (name_b, start_b, end_b, _) = sorted(run.calls, key=lambda c: c[1])
    assert name_a != name_b and start_b < end_a, run.calls  # they overlapped
    assert elapsed < 0.35, f"two 0.2 s batches took {elapsed:.2f} s: they ran one after the other"
    batcher.close()
    batcher.join(5)


def test_close_answers_every_queued_request_then_stops_all_workers():
    run = SlowSums(0.01)
    batcher = DynamicBatcher(run, max_batch_size=2, timeout_s=0.0, arrivals=Arrivals(), name="t", workers=3)

    async def main() -> list[dict[str, np.ndarray]]:
        futures = [batcher.submit(images) for images in images_of([1] * 20)]
        batcher.close()
        with pytest.raises(RuntimeError, match="closed"):
            batcher.submit(images_of([1])[0])
        return list(await asyncio.gather(*futures))

    assert len(asyncio.run(main())) == 20
    batcher.join(5)
    assert not any(t.name.startswith("batcher-t-") for t in threading.enumerate())


def test_extra_workers_take_only_full_batches():
    """While one batch runs, single requests are held until they make a full batch, which a second
    worker then starts at once; a part-filled batch waits for a running one to end (small batches
    cost more per image)."""
    run = SlowSums(0.3)
    batcher = DynamicBatcher(run, max_batch_size=4, timeout_s=0.0, arrivals=Arrivals(), name="t", workers=2)

    async def main() -> None:
        futures = [batcher.submit(images_of([4])[0])]
        for _ in range(4):
            await asyncio.sleep(0.03)  # the first batch is running; singles trickle in
            futures.append(batcher.submit(images_of([1])[0]))
        await asyncio.sleep(0.03)
        futures.append(batcher.submit(images_of([1])[0]))  # both workers busy: waits
        await asyncio.gather(*futures)

    asyncio.run(main())
    calls = sorted(run.calls, key=lambda c: c[1])
    assert [n for *_, n in calls] == [4, 4, 1], calls
    (_, start_a, end_a, _), (_, start_b, end_b, _), (_, start_c, _, _) = calls
    assert start_b < end_a, "the full batch of singles should start while the first batch runs"
    assert start_c >= min(end_a, end_b) - 0.01, "the lone request should wait for a running batch to end"
    batcher.close()
    batcher.join(5)
