"""Where a bench run is, on stderr: a line as each row starts, and one as each of its child
processes (a sweep, a probe, the hand-written script) ends, with run k of N and the row's time left.

A full run takes about 20 minutes on 2 cores, and its children's output is captured to be read
back, so without these lines it would sit silent for minutes at a time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Progress:
    """The row being measured and how many of its child processes have ended (``clock``: seconds)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.row, self.runs, self.ended = "", 0, 0
        self.row_started = clock()

    def start_row(self, row: str, runs: int) -> None:
        self.row, self.runs, self.ended = row, runs, 0
        self.row_started = self.clock()
        say(f"{row}: {runs} run(s)" if runs else f"{row}: in this process")

    def run_ended(self, what: str, seconds: float) -> None:
        self.ended += 1
        left = self.runs - self.ended
        per_run = (self.clock() - self.row_started) / self.ended
        eta = f", about {left * per_run / 60:.1f} min left in the row" if left > 0 else ""
        say(f"{self.row}: run {self.ended}/{self.runs} ({what}) took {seconds:.0f} s{eta}")


PROGRESS = Progress()
