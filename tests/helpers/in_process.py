"""`vae-train` run inside the test's own process: `train_app` with a command line, in a folder.

A process start (torch, MLflow, Hydra imports) costs seconds; a call costs a fraction of one, so
tests that run many command lines (the fuzz, the documented examples) call the app here. What a
new process would have is restored around each call: the working folder, `sys.argv`, our signal
handlers.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vae_sweep.cli import train_app


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


def vae_train(cwd: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Run ``vae-train ARGV`` in ``cwd``; its exit code (0 when it returns) and what it printed."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["vae-train", *argv]
    os.chdir(cwd)
    try:
        train_app()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)
