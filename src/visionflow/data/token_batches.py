"""Token streams for truncated backpropagation through time (the PTB tutorial's `ptb_producer`).

The split's ids are cut into `streams` equal rows, laid side by side — row b holds the b-th
contiguous stretch of the text — and read `bptt` columns at a time: batch k is columns
[k·bptt, (k+1)·bptt) as inputs and the same shifted by one as targets.  A model that carries
its state from one batch to the next therefore reads each row as one continuous text.  The last
partial window of each epoch is dropped (every batch is bptt long, so every step costs the same).
The order is fixed (no shuffling): resuming at batch k of an epoch is exact.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..errors import InputError


class TokenBatches:
    """(inputs (streams, bptt) int64, targets (streams·bptt,) int64) batches of one token split.

    `batch_size` is the tokens per batch (streams × bptt): the trainer's examples/s is tokens/s.
    """

    def __init__(self, ids: np.ndarray, streams: int, bptt: int, device: torch.device | str, what: str = "text"):
        if streams < 1 or bptt < 1:
            raise InputError(f"--batch-size and --bptt must be at least 1, got {streams} and {bptt}")
        per_stream = len(ids) // streams
        if per_stream < bptt + 1:
            raise InputError(f"{what}: {len(ids):,} tokens are too few for {streams} streams of {bptt + 1} "
                             "(lower --batch-size or --bptt)")
        self.streams, self.bptt = streams, bptt
        self.batch_size = streams * bptt
        rows = torch.from_numpy(np.ascontiguousarray(ids[: per_stream * streams], dtype=np.int64))
        self.data = rows.view(streams, per_stream).to(device)

    @property
    def num_examples(self) -> int:
        """Tokens predicted per epoch."""
        return self.steps_per_epoch * self.batch_size

    @property
    def steps_per_epoch(self) -> int:
        return (self.data.shape[1] - 1) // self.bptt

    def inputs(self, count: int) -> torch.Tensor:
        return self.data[:, : self.bptt]

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k in range(start, self.steps_per_epoch):
            i = k * self.bptt
            yield self.data[:, i:i + self.bptt], self.data[:, i + 1:i + 1 + self.bptt].reshape(-1)
