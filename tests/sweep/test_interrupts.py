"""Where a signal stops the process: the rules of ``vae_sweep.interrupts``, with real signals
sent to this process (the end-to-end cases are in tests/e2e/test_crashes.py)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import weakref
from collections.abc import Iterator

import pytest

from vae_sweep import interrupts
from vae_sweep.interrupts import Interrupted, InterruptState, ShieldedCallback


@pytest.fixture
def state() -> Iterator[InterruptState]:
    """A fresh state that receives SIGTERM and SIGHUP for the test, as ``install()`` routes them."""
    fresh = InterruptState()
    previous = {signum: signal.signal(signum, fresh.on_signal) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield fresh
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def send(signum: int) -> None:
    os.kill(os.getpid(), signum)  # the handler runs before kill() returns to Python code


def test_a_signal_raises_at_once_where_nothing_is_shielded(state):
    with pytest.raises(Interrupted) as raised:
        send(signal.SIGTERM)
    assert raised.value.signal_name == "SIGTERM" and isinstance(raised.value, KeyboardInterrupt)


def test_a_shielded_signal_waits_for_the_next_interruptible_part(state):
    with state.shielded():
        send(signal.SIGTERM)  # claiming a trial, telling Optuna: recorded only
        assert state.requested() == signal.SIGTERM
    with pytest.raises(Interrupted), state.interruptible():  # training starts: raised on entry
        pytest.fail("not reached")


def test_a_call_shielded_inside_training_is_finished_before_the_signal_is_raised(state):
    finished = []
    with pytest.raises(Interrupted), state.interruptible(), state.shielded():
        send(signal.SIGHUP)  # an MLflow flush while training
        finished.append(True)
    assert finished == [True]


def test_a_signal_that_lands_in_a_finalizer_is_raised_quietly_at_the_next_safe_point(state, monkeypatch, capsys):
    """Garbage collection runs weakref callbacks anywhere in training; an Interrupted raised in
    one is only printed as ignored by Python. It must still stop training, without a traceback."""
    monkeypatch.setattr(interrupts, "STATE", state)
    monkeypatch.setattr(sys, "unraisablehook", interrupts.keeping_interrupts(sys.unraisablehook))

    class Mapped:  # stands for SQLAlchemy's registry entries, whose finalizers run at a collection
        pass

    thing = Mapped()
    ref = weakref.ref(thing, lambda _: send(signal.SIGTERM))
    went_on = []
    with pytest.raises(Interrupted), state.interruptible():
        del thing
        gc.collect()  # the callback ran, and Python swallowed what it raised
        went_on.append(True)
        with state.shielded():  # the next epoch's callbacks: a safe point
            pass
        pytest.fail("training went on past the next safe point")
    assert went_on == [True] and ref() is None
    assert "Traceback" not in capsys.readouterr().err


def test_a_second_signal_never_raises_again(state):
    with contextlib.suppress(Interrupted):
        send(signal.SIGTERM)
    send(signal.SIGTERM)  # a second Ctrl-C during the clean-up of the first: nothing raised
    with state.interruptible():
        pass
    assert state.requested() == signal.SIGTERM


def test_a_shielded_callback_is_not_cut_in_half_and_keeps_its_interface(state, monkeypatch):
    monkeypatch.setattr("vae_sweep.interrupts.STATE", state)
    monkeypatch.setattr("vae_sweep.interrupts.shielded", state.shielded)

    class Recorder:
        metric = "val_loss"

        def __init__(self) -> None:
            self.calls = []

        def on_epoch_end(self, epoch: int, metrics: dict) -> None:
            send(signal.SIGTERM)
            self.calls.append(epoch)

    recorder = Recorder()
    wrapped = ShieldedCallback(recorder)
    assert wrapped.metric == "val_loss" and not hasattr(wrapped, "on_resume")
    with pytest.raises(Interrupted), state.interruptible():
        wrapped.on_epoch_end(1, {})
    assert recorder.calls == [1]
