"""Where downloaded and derived data is kept between runs."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$VISIONFLOW_CACHE, else ~/.cache/visionflow: datasets, decoded shards, weights, bottlenecks."""
    return Path(os.environ.get("VISIONFLOW_CACHE", Path.home() / ".cache" / "visionflow"))
