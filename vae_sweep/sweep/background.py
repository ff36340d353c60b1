"""A small job repeated in a background thread while a block of code runs (a trial's heartbeat,
a worker watching the process that started it)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def repeating(interval: float, action: Callable[[], object], name: str) -> Iterator[None]:
    """Call ``action()`` every ``interval`` seconds in a daemon thread while inside the block,
    until it returns True; the thread is joined when the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                if action() is True:
                    return
            except Exception as error:  # a store that fails (a full disk): the main thread finds out itself
                log.warning("%s stopped: %s", name, str(error).splitlines()[0][:300] if str(error) else error)
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
