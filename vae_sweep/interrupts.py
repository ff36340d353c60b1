"""Ctrl-C, SIGTERM and SIGHUP turned into a clean stop, the same way for single runs and sweeps.

A signal is honoured at once where nothing needs closing, and only at a safe point where
something does. By default (and inside ``interruptible()``, around training) the first signal
raises ``Interrupted``, a ``KeyboardInterrupt``, which the caller turns into a KILLED MLflow run
or a FAIL trial with its retry queued. Inside ``shielded()`` (claiming a trial, telling Optuna,
closing MLflow runs, waiting for a launcher's workers) it is only recorded: the code finishes
what it does, then asks ``requested()`` and stops cleanly. Whatever the moment, a trial is never
left half-recorded.

Later signals never raise again: a second Ctrl-C, or the terminal's SIGINT reaching a worker
that its sweep also forwards, must not cut the first one's clean-up short.

Example:
    >>> state = InterruptState()
    >>> with state.shielded():
    ...     state.on_signal(signal.SIGTERM, None)  # recorded, not raised
    >>> state.requested() == signal.SIGTERM
    True
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_CODE = 130  # the shell's code for Ctrl-C; used for SIGTERM and SIGHUP too (docs/reliability.md)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; ``signal_name`` says which (SIGINT for Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")


class InterruptState:
    """The process's record of stop requests and of where a stop may be raised."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.raised = False
        self.modes: list[bool] = []  # innermost last: True raises (interruptible), False records (shielded)
        self.listeners: list[Callable[[int], None]] = []

    def on_signal(self, signum: int, frame: object) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        for listener in self.listeners:
            listener(signum)
        if first and (not self.modes or self.modes[-1]):
            self.raise_now()

    def raise_now(self) -> None:
        assert self.signum is not None
        self.raised = True
        raise Interrupted(self.signum)

    def requested(self) -> int | None:
        """The signal that asked for a stop, or None."""
        return self.signum

    def requested_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Here a signal raises ``Interrupted``; one that came while shielded raises on entry."""
        if self.signum is not None and not self.raised:
            self.raise_now()
        self.modes.append(True)
        try:
            yield
        finally:
            self.modes.pop()

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Here a signal is only recorded, for the code to act on at its next ``requested()``.
        Inside ``interruptible()`` (an MLflow or Optuna call made while training), a signal that
        came meanwhile is raised as soon as the shielded call is done, never in the middle of it."""
        self.modes.append(False)
        try:
            yield
        finally:
            self.modes.pop()
        if self.modes and self.modes[-1] and self.signum is not None and not self.raised:
            self.raise_now()


STATE = InterruptState()
requested = STATE.requested
requested_name = STATE.requested_name
interruptible = STATE.interruptible
shielded = STATE.shielded


def install() -> bool:
    """Route SIGINT, SIGTERM and SIGHUP through ``STATE``; only the main thread can (False elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for signum in SIGNALS:
        if signal.getsignal(signum) != STATE.on_signal:
            signal.signal(signum, STATE.on_signal)
    if not getattr(sys.unraisablehook, "keeps_interrupts", False):
        sys.unraisablehook = keeping_interrupts(sys.unraisablehook)
    return True


def keeping_interrupts(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    """An ``Interrupted`` raised while Python ran a finalizer (a weakref callback, ``__del__``,
    which garbage collection may run in the middle of training) cannot stop anything: Python
    prints it as ignored and goes on. Then it is not printed, and counts as not raised, so the
    next safe point raises it again (``shielded()``'s end, around each epoch's callbacks)."""

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            STATE.raised = False
            return
        previous(unraisable)

    hook.keeps_interrupts = True  # type: ignore[attr-defined]
    return hook


class ShieldedCallback:
    """A training callback whose every call runs ``shielded()``: its database writes (MLflow's
    metrics, Optuna's intermediate values) are never cut in half by a signal, which would leave a
    transaction open and the store locked for the clean-up that follows."""

    def __init__(self, callback: object) -> None:
        self.callback = callback

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self.callback, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: object, **kwargs: object) -> object:
            with shielded():
                return attribute(*args, **kwargs)

        return call


@contextlib.contextmanager
def left_to_children(signum: int) -> Iterator[None]:
    """Ignore ``signum`` here while child processes are started and run, so they inherit the
    ignore: joblib's resource tracker then outlives a terminal's SIGHUP to the whole job,
    which the workers, who install their own handler, act on themselves."""
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signum, previous)


@contextlib.contextmanager
def listening(listener: Callable[[int], None]) -> Iterator[None]:
    """Call ``listener(signum)`` on every signal while inside (a sweep forwards them to its workers)."""
    STATE.listeners.append(listener)
    try:
        yield
    finally:
        STATE.listeners.remove(listener)
