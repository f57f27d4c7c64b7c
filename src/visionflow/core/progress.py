"""Progress output: a live bar on a terminal, plain log lines when piped (no flooding)."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    """A step counter that draws a tqdm bar on a TTY and otherwise stays silent but for `log`."""

    def __init__(self, total: int, initial: int = 0, desc: str = "train", stream: TextIO | None = None,
                 unit: str = "step") -> None:
        self.stream = stream or sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream, dynamic_ncols=True,
                        unit=unit, leave=False) if self.interactive else None

    def advance(self, steps: int) -> None:
        """Count steps; tqdm itself limits redraws to a few per second."""
        if self.bar is not None:
            self.bar.update(steps)

    def describe(self, postfix: str) -> None:
        """Show the latest metrics beside the bar (set when they are read back, not per step)."""
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)

    def log(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
