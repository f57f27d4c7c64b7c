"""The dataset a saved run was trained on, found again from its config alone."""

from __future__ import annotations

import os

from ..data.base import Dataset
from ..data.catalog import DataRequest, load
from .config import RunConfig, TrainConfig


def request_for(config: TrainConfig, data_dir: str | os.PathLike | None = None, download: bool = True) -> DataRequest:
    """The catalog request of `config`'s dataset (`data_dir` overrides where it lives)."""
    where = data_dir if data_dir is not None else config.data_dir
    return DataRequest(data_dir=os.fspath(where) if where is not None else None,
                       validation_size=config.validation_size, validation_percentage=config.validation_percentage,
                       testing_percentage=config.testing_percentage, download=download, csv=config.csv)


def dataset_for_run(run: RunConfig, data_dir: str | os.PathLike | None = None, download: bool = True,
                    split: str | None = None) -> Dataset:
    """The dataset `run` was trained on, split as it was.

    Image folders are re-read and sized by the run's own preprocessing — only `split` when one
    is named (the others are then empty: decoding photos is the slow part); named datasets load
    as they did for training.
    """
    from dataclasses import replace

    request = replace(request_for(run.train, data_dir, download), fit=run.preprocessing,
                      splits=(split,) if split else ("train", "validation", "test"))
    return load(run.train.dataset, request)
