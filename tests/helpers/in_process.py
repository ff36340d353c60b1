"""`vae-train` run inside the test's own process: `train_app` with a command line, in a folder.

A process start (torch, MLflow, Hydra imports) costs seconds; a call costs a fraction of one, so
tests that run many command lines (the fuzz, the documented examples) call the app here. What a
new process would have is restored around each call: the working folder, `sys.argv`, our signal
handlers.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.environment import PERSONAL
from vae_sweep.cli import train_app
from vae_sweep.garbage import collect_as_python_does
from vae_sweep.train.data import KEPT


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("vae-train: error:")]


@contextlib.contextmanager
def as_a_new_process(cwd: Path, argv: Sequence[str], *, clean: bool) -> Iterator[list[int]]:
    """``vae-train ARGV`` started in ``cwd`` (``clean``: without the developer's ``PERSONAL``
    variables); yields a one-item list that receives the exit code, and restores everything."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    old_argv, old_cwd = sys.argv, os.getcwd()
    personal = {name: os.environ.pop(name) for name in PERSONAL if clean and name in os.environ}
    sys.argv = ["vae-train", *argv]
    os.chdir(cwd)
    code = [0]
    try:
        yield code
    except SystemExit as exit_:
        code[0] = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        KEPT.stop()  # a sweep's worker, run here, kept its data set
        collect_as_python_does()  # the command held and froze the collector for its own process
        sys.argv = old_argv
        os.chdir(old_cwd)
        os.environ.update(personal)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def vae_train(cwd: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Run ``vae-train ARGV`` in ``cwd``, in the environment the test set; its exit code (0 when
    it returns) and what it printed."""
    with as_a_new_process(cwd, argv, clean=False) as code:
        train_app()
    captured = capsys.readouterr()
    return Outcome(code[0], captured.out, captured.err)


def run_here(cwd: Path, argv: Sequence[str]) -> subprocess.CompletedProcess:
    """``vae-train ARGV`` here rather than in a process of its own (seconds of imports saved), as
    the ``CompletedProcess`` a test of a real process reads: its exit code and what it printed.
    For commands that must stop before anything runs, and for sweeps (whose joblib workers are
    processes of their own anyway) given absolute store URLs: MLflow keeps one store per URL in
    a process, so a relative one would reach another test's folder."""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        as_a_new_process(cwd, argv, clean=True) as code,
    ):
        train_app()
    return subprocess.CompletedProcess(["vae-train", *argv], code[0], out.getvalue(), err.getvalue())
