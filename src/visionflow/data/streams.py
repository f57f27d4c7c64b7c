"""Named random streams: every random number of an epoch comes from its own seeded generator.

A stream is a pure function of (seed, epoch, stream), drawn on the CPU, so a run resumed at any
step — on any device — replays exactly the data order and distortions an uninterrupted run saw,
and switching one distortion on or off leaves the others' draws unchanged.

The numbers are part of every saved run's data: never renumber a stream.  Retired numbers stay
retired: 1 drew `augment_shift`'s translations (now `Augment.pad`, stream CROP) and 2, 3, …
drew the per-batch distortions of `retrain --distortions` (now ZOOM, FLIP, BRIGHTNESS_FACTOR).
"""

from __future__ import annotations

import enum

import torch


class Stream(enum.IntEnum):
    ORDER = 0  # the permutation of the training examples
    CROP = 101  # crop / pad-and-crop corners
    FLIP = 102  # random flips; epoch 0's draw is the fixed bit of alternating flips
    BRIGHTNESS = 103
    CONTRAST = 104
    CUTOUT = 105
    ZOOM = 106  # zoom window size and centre
    BRIGHTNESS_FACTOR = 107


def epoch_generator(seed: int, epoch: int, stream: Stream = Stream.ORDER) -> torch.Generator:
    """A CPU generator for one stream of one epoch's randomness, identical on every device and resume."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 7919 + int(stream)) % (2**63))
    return g
