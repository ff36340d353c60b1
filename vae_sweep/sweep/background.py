"""A small job repeated in a background thread while a block of code runs (a trial's heartbeat,
a worker watching the process that started it)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def repeating(interval: float, action: Callable[[], object], name: str) -> Iterator[None]:
    """Call ``action()`` every ``interval`` seconds in a daemon thread while inside the block,
    until it returns True; the thread is joined when the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            if action() is True:
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
