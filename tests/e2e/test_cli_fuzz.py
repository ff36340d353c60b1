"""Fuzzing the whole `vae-train` command line with Hypothesis: random mixes of valid and invalid
overrides of every config group and sweeper setting, single runs and sweeps.

Whatever the mix, the only outcomes are a finished run or sweep (exit 0), or a refusal without a
traceback: one `vae-train: error:` line (exit 2, our checks) or Hydra's own message (exit 1,
options and keys that do not exist); and never a run or trial left RUNNING. The app runs in this
process (`train_app` with its arguments), each example in a fresh folder with its own stores, so
an example costs a fraction of a second rather than a process start. ``derandomize`` makes every
run draw the same examples.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from pathlib import Path

import pytest
from helpers.in_process import vae_train
from helpers.tiny import TINY_SWEEP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=8, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

# Per key: values that are fine, and values that are not (wrong type, out of range, unknown).
VALUES = {
    "optimizer": (["adam", "sgd", "rmsprop"], ["adamax", "", "adam,sgd"]),
    "optimizer.lr": (["0.001", "0.01"], ["-1", "0", "abc", "inf"]),
    "model.activation": (["relu", "tanh"], ["relux", "7"]),
    "model.latent_dim": (["2", "4"], ["0", "-3", "2.5"]),
    "model.encoder_dropout": (["0.0", "0.2"], ["1.0", "-0.1"]),
    "model.encoder_norm": (["none", "batchnorm"], ["groupnorm"]),
    "scheduler": (["constant", "cosine", "cyclic"], ["linear"]),
    "regularization": (["standard", "kl_warmup", "free_bits"], ["l2"]),
    "regularization.beta": (["1.0", "0.5"], ["-1", "nan"]),
    "data.binarize": (["none", "static"], ["maybe"]),
    "trainer.seed": (["0", "7"], ["-1", "4294967296"]),
    "trainer.batch_size": (["16", "64"], ["0", "x"]),
    "trainer.epochs": (["1"], ["0", "1.5"]),
    "trainer.checkpoint_every": (["0", "1"], ["-1"]),
    "objective": (["val_loss", "test_loss"], ["accuracy"]),
    "+optimizer.nope": ([], ["1"]),
    "trainer.typo": ([], ["1"]),
}
SWEEPER = {
    "hydra.sweeper.sampler.name": (["tpe", "random", "qmc"], ["annealing"]),
    "hydra.sweeper.pruner.name": (["none", "median"], ["bogus"]),
    "hydra.sweeper.direction": (["minimize"], ["upwards", "[minimize,minimize]"]),
    "hydra.sweeper.max_failure_rate": (["1.0"], ["2"]),
    "hydra.sweeper.heartbeat_interval": (["30", "0"], ["-5"]),
    "hydra.sweeper.max_retry": (["1"], ["-1"]),
    "hydra.sweeper.plots": (["[]"], ["[contour]"]),
    "hydra.sweeper.params.optimizer.lr": (["tag(log, interval(1e-4, 1e-2))"], ["interval(1, 0)", "choice("]),
    "hydra.sweeper.n_trial": ([], ["3"]),
}


def overrides(table: dict[str, tuple[list[str], list[str]]]) -> st.SearchStrategy[list[str]]:
    def one(key: str) -> st.SearchStrategy[str]:
        good, bad = table[key]
        return st.sampled_from([*good, *bad]).map(lambda value: f"{key}={value}")

    return st.lists(st.sampled_from(sorted(table)), max_size=4, unique=True).flatmap(
        lambda keys: st.tuples(*(one(key) for key in keys)).map(list)
    )


def running_rows(path: Path, query: str) -> int:
    """How many rows ``query`` counts in a store that may not exist, or not have its tables."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as connection, contextlib.suppress(sqlite3.OperationalError):
        return connection.execute(query).fetchone()[0]
    return 0


@pytest.fixture
def no_tracking_variable(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.slow
@FUZZ
@given(sweep=st.booleans(), run_overrides=overrides(VALUES), sweeper_overrides=overrides(SWEEPER))
def test_any_command_line_ends_in_a_run_or_one_clean_refusal_never_a_traceback_or_a_running_run(
    sweep, run_overrides, sweeper_overrides, no_tracking_variable, capsys
):
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        argv = [*TINY_SWEEP, "trainer.epochs=1", f"tracking.uri=sqlite:///{cwd}/mlflow.db", *run_overrides]
        if sweep:
            argv = [
                "-m",
                "study=quick",
                "hydra.sweeper.n_trials=1",
                "hydra.sweeper.plots=[]",
                *argv,
                *sweeper_overrides,
            ]
            argv += [f"hydra.sweeper.storage=sqlite:///{cwd}/optuna.db", f"hydra.sweep.dir={cwd}/multirun"]
        else:
            argv += [f"hydra.run.dir={cwd}/outputs"]
        outcome = vae_train(cwd, argv, capsys)
        code, text = outcome.code, outcome.text
        assert code in (0, 1, 2), (argv, text[-3000:])
        assert "Traceback" not in text, (argv, text[-5000:])
        if code == 2:
            assert len(outcome.error_lines()) == 1, (argv, outcome.err[-3000:])
        assert running_rows(cwd / "mlflow.db", "SELECT count(*) FROM runs WHERE status = 'RUNNING'") == 0, argv
        assert running_rows(cwd / "optuna.db", "SELECT count(*) FROM trials WHERE state = 'RUNNING'") == 0, argv
