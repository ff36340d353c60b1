"""The sweep's plots drawn by a child process that imported matplotlib while the sweep started.

The end of a 10-trial sweep spent about 2 s on its plots, most of it imports the trials never
need: matplotlib, and scikit-learn for Optuna's fANOVA importances. A child started with the
sweep makes those imports on another core while the sweep makes its own (one core's work until
the first trial trains), then waits. At the end it draws the plots from the study's storage, so
the sweep only waits for the drawing. The child says which plots it saved and why it skipped
others, and the sweep logs that as if it had drawn them itself; when the child cannot (it died,
or its answer is not one), the sweep draws them as it would have. A child whose sweep was
killed exits at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from vae_sweep.track.store_ahead import exit_without

PLOTS_LOG = logging.getLogger("vae_sweep.sweep.plots")  # the notes read as if drawn here

SERVE = "import sys; from vae_sweep.sweep.plots_ahead import serve; serve(*sys.argv[1:])"
DRAW_TIMEOUT_S = 300  # a study of thousands of trials draws in well under this


class PlotsAhead:
    """The child that draws a study's plots ``names`` (None: the default ones) once told which."""

    def __init__(self, names: list[str] | None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(os.getpid()), json.dumps(names)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # a Ctrl-C is the sweep's to handle; it cancels the child
        )

    @classmethod
    @contextlib.contextmanager
    def started(cls, names: list[str] | None, n_trials: int) -> Iterator[PlotsAhead | None]:
        """The child, when the sweep will draw something: plots were asked for, or by default a
        sweep of at least two trials (the default plots compare trials); stopped on leaving,
        drawn or not. Started with the sweep, so that its imports run while the sweep makes its
        own, on another core."""
        from vae_sweep.sweep.plots import MIN_COMPARED

        ahead = None if names == [] or (names is None and n_trials < MIN_COMPARED) else cls(names)
        try:
            yield ahead
        finally:
            if ahead is not None:
                ahead.cancel()

    def open(self, storage_url: str, study_name: str) -> None:
        """The study to draw, once it exists; on stdin, not the command line, where every user of
        the machine could read a password."""
        with contextlib.suppress(OSError):  # a child that died: ``draw`` says so
            self.process.stdin.write(json.dumps({"storage": storage_url, "study": study_name}) + "\n")
            self.process.stdin.flush()

    def draw(self, folder: Path) -> list[Path] | None:
        """The plots saved in ``folder``, their notes logged here; None when the child could not
        draw them (the sweep then does)."""
        try:
            answer, _ = self.process.communicate(f"{folder}\n", timeout=DRAW_TIMEOUT_S)
            reply = json.loads(answer)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.cancel()
            return None
        if self.process.returncode != 0:
            return None
        for note in reply["notes"]:
            PLOTS_LOG.info("%s", note)
        return [Path(path) for path in reply["saved"]]

    def cancel(self) -> None:
        """Stop the child if it still runs (a sweep that ends without drawing)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Notes(logging.Handler):
    """The plots' notes (a plot skipped, and why), kept for the sweep to log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def serve(sweep_pid: str, names_json: str) -> None:
    """In the child: the imports, then from stdin the study (opened at once) and the folder to
    draw its plots in (none: the sweep ended without plots), and what happened to stdout as JSON."""
    threading.Thread(target=exit_without, args=(int(sweep_pid),), daemon=True).start()
    import matplotlib.pyplot as plt  # the imports this child is for
    import optuna
    import optuna.importance  # scikit-learn's forests, for fANOVA
    import optuna.visualization.matplotlib

    from vae_sweep.sweep.plots import save_plots
    from vae_sweep.sweep.study import make_storage

    warm_up(plt)
    line = sys.stdin.readline()
    if not line.strip():
        return
    request = json.loads(line)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Opened now; its trials are read when the plots are drawn (Optuna rereads unfinished ones).
    storage = make_storage(request["storage"])
    study = optuna.load_study(study_name=request["study"], storage=storage)
    folder = sys.stdin.readline().strip()
    if not folder:
        return
    notes = Notes()
    PLOTS_LOG.setLevel(logging.INFO)
    PLOTS_LOG.addHandler(notes)
    saved = save_plots(study, Path(folder), json.loads(names_json))
    storage.engine.dispose()  # closed: SQLite's last reader leaves no -wal or -shm file behind
    print(json.dumps({"saved": [str(path) for path in saved], "notes": notes.messages}), flush=True)
    # The answer is out and the files closed: the interpreter's teardown of matplotlib, SciPy and
    # scikit-learn (half a second, which the sweep would wait for) has nothing left to do.
    os._exit(0)


def warm_up(plt) -> None:
    """One small figure drawn to memory: matplotlib loads its fonts and renderer on first use."""
    with plt.style.context("ggplot"):
        figure, axes = plt.subplots()
        axes.plot([0, 1], [0, 1], label="warm-up")
        axes.legend()
        figure.savefig(io.BytesIO(), format="png", bbox_inches="tight")
        plt.close(figure)
