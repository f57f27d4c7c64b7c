"""Batches of arbitrary arrays (Keras-style `fit(x, y)` data): inputs of any shape and dtype,
targets of any shape, optional per-example weights.

Like `TensorBatches`, the arrays go to the training device once and the epoch order is a pure
function of (seed, epoch) (`streams.Stream.ORDER`), so a run resumed at any step sees exactly
the batches an uninterrupted one would have.  The last batch of an epoch may be short (Keras'
behaviour); `steps_per_epoch` may cut epochs shorter.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from ..core.distributed import part_of
from ..errors import InputError
from .streams import Stream, epoch_generator


def as_tensor(array: "np.ndarray | torch.Tensor", name: str) -> torch.Tensor:
    """`array` as a tensor: float64 becomes float32 (Keras' floatx); other dtypes are kept."""
    if isinstance(array, torch.Tensor):
        tensor = array.detach()
    else:
        try:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        except TypeError:
            raise InputError(f"{name}: arrays of {np.asarray(array).dtype} cannot be used (numbers only)") from None
    return tensor.float() if tensor.dtype == torch.float64 else tensor


class ArrayBatches:
    """(inputs, targets[, weights]) batches of `batch_size` rows, on `device`."""

    def __init__(self, x: "np.ndarray | torch.Tensor", y: "np.ndarray | torch.Tensor | None", batch_size: int,
                 device: torch.device | str = "cpu", shuffle: bool = False, seed: int = 0,
                 weights: "np.ndarray | torch.Tensor | None" = None, steps_per_epoch: Optional[int] = None,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise InputError(f"batch_size {batch_size} (the global batch) does not divide among {world_size} processes")
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.x = as_tensor(x, "x").to(self.device)
        n = len(self.x)
        self.y = as_tensor(y, "y").to(self.device) if y is not None else None
        self.weights = as_tensor(weights, "sample_weight").float().to(self.device) if weights is not None else None
        for name, array in (("y", self.y), ("sample_weight", self.weights)):
            if array is not None and len(array) != n:
                raise InputError(f"{name}: {len(array)} rows, but x has {n}")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, not {batch_size}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        full = -(-n // batch_size)
        if steps_per_epoch is not None and not 1 <= steps_per_epoch <= full:
            raise InputError(f"steps_per_epoch={steps_per_epoch}: the data has {full} batches of {batch_size}")
        self._steps = steps_per_epoch or full

    @property
    def num_examples(self) -> int:
        return len(self.x)

    @property
    def steps_per_epoch(self) -> int:
        return self._steps

    def inputs(self, count: int) -> torch.Tensor:
        return self.x[:count]

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches of `epoch` from batch number `start` on."""
        n, b = self.num_examples, self.batch_size
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, epoch, Stream.ORDER)).to(self.device)
        for i in range(start, self._steps):
            lo, hi = part_of(i * b, min((i + 1) * b, n), self.rank, self.world_size)  # this process's part
            index = order[lo:hi] if order is not None else slice(lo, hi)
            batch = (self.x[index], self.y[index] if self.y is not None else None)
            yield batch + (self.weights[index],) if self.weights is not None else batch
