"""What machine a benchmark ran on, in the words docs/benchmarks.md uses (stdlib only: peers'
virtual environments import it too)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """e.g. "Intel(R) Xeon(R) Processor, 2 cores, Linux 6.1" """
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
