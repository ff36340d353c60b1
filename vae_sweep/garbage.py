"""When a command lets Python's cyclic garbage collector run: not over the whole heap while it
starts, and not at all once it has finished.

With torch, MLflow, SQLAlchemy, Optuna and Hydra loaded, the heap holds about half a million
objects, and each full collection walks all of them. Left as it is, Python runs seven full
collections while a sweep starts (its heap grows by a quarter each time: 1.1 s in all), two more
during a 10-trial sweep (0.6 s), and several at exit, as the modules are cleared (2.4 s of a 9 s
one-trial sweep went by after its last line was printed).

``hold_full_collections`` (as a command starts) lets only the young generations be collected,
where the garbage of composing and checking configs goes; ``release_after_startup`` (once the
sweep or run is set up) moves everything alive then into the permanent generation
(``gc.freeze``), which later collections skip, and collects as before from there on. What that
keeps for good is the few cyclic objects that went from young to old during start-up and died
there, a few MB. ``collect_nothing_at_exit`` makes ``gc.freeze`` the last atexit handler. Nothing
is lost at exit: every other atexit handler has run by then (logging's flush, joblib's and Ray's
shutdowns, the removal of temporary folders by ``weakref.finalize``), and reference counting still
frees and finalizes each object as its module is cleared; what is skipped is collecting reference
cycles, whose finalizers Python never promises to run at exit.

They are for our console entry points and our sweep's workers: a library that imports vae_sweep
keeps Python's collector as it is, and ``collect_as_python_does`` gives it back to a process
that goes on after a command.
"""

from __future__ import annotations

import atexit
import gc

FULL_COLLECTIONS_HELD = 2**30  # gen-1 collections before a full one: never, during start-up
_held_thresholds: tuple[int, int, int] | None = None


def hold_full_collections() -> None:
    """Until ``release_after_startup``, collect the young generations only."""
    global _held_thresholds
    if _held_thresholds is None:
        _held_thresholds = gc.get_threshold()
        gc.set_threshold(_held_thresholds[0], _held_thresholds[1], FULL_COLLECTIONS_HELD)


def release_after_startup() -> None:
    """Freeze what start-up left alive and collect as before; nothing where nothing is held."""
    global _held_thresholds
    if _held_thresholds is not None:
        gc.freeze()
        gc.set_threshold(*_held_thresholds)
        _held_thresholds = None


def collect_as_python_does() -> None:
    """Undo all of it in a process that goes on after a command (a test that runs ``vae-train``
    in its own process): what was frozen is collected again, whatever was held is released."""
    global _held_thresholds
    if _held_thresholds is not None:
        gc.set_threshold(*_held_thresholds)
        _held_thresholds = None
    gc.unfreeze()
    atexit.unregister(gc.freeze)


def collect_nothing_at_exit() -> None:
    """Registered once, however often a process calls an entry point (the tests do)."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
