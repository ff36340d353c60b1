"""The end-of-sweep plots drawn by a child that imported matplotlib meanwhile: the same files and
notes as drawn in the sweep, nothing when the sweep draws none, the sweep's own drawing when the
child cannot, and no child outliving its sweep."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
import pytest
from helpers.sweep_processes import child_gone_after_its_sweep_is_killed
from optuna.trial import TrialState

from vae_sweep.sweep.plots import save_plots
from vae_sweep.sweep.plots_ahead import PlotsAhead

pytestmark = pytest.mark.slow  # each child imports matplotlib and scikit-learn: seconds


def stored_study(folder: Path, *, complete: int = 6) -> tuple[str, str]:
    """A SQLite study of ``complete`` finished trials over two parameters, no curves."""
    url = f"sqlite:///{folder}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(complete):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("lr", 1e-4, 1e-1, log=True) + trial.suggest_int("width", 8, 64))
    return url, "s"


def test_the_child_draws_what_the_sweep_would_and_says_what_it_skipped(tmp_path: Path, caplog) -> None:
    url, name = stored_study(tmp_path)
    with PlotsAhead.started(None, 6) as ahead:
        assert ahead is not None
        ahead.open(url, name)
        with caplog.at_level(logging.INFO, logger="vae_sweep.sweep.plots"):
            drawn = ahead.draw(tmp_path / "child")
    assert ahead.process.returncode == 0
    caplog_notes = [r.getMessage() for r in caplog.records if r.name == "vae_sweep.sweep.plots"]
    here = save_plots(optuna.load_study(study_name=name, storage=url), tmp_path / "here")
    assert [path.name for path in drawn] == [path.name for path in here]
    assert all(path.is_file() and path.stat().st_size > 10_000 for path in drawn)
    assert any("intermediate_values skipped" in note for note in caplog_notes)  # no curves: skipped, said


def test_the_child_reads_the_trials_finished_after_it_opened_the_study(tmp_path: Path) -> None:
    url, name = stored_study(tmp_path, complete=1)
    with PlotsAhead.started(["optimization_history"], 1) as ahead:
        ahead.open(url, name)
        time.sleep(1)
        study = optuna.load_study(study_name=name, storage=url)
        study.enqueue_trial({"lr": 0.01, "width": 9})
        study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) + t.suggest_int("width", 8, 64), 1)
        assert [path.name for path in ahead.draw(tmp_path / "plots")] == ["optimization_history.png"]
    complete = optuna.load_study(study_name=name, storage=url).get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2


def test_no_child_when_nothing_will_be_drawn() -> None:
    with PlotsAhead.started([], 50) as none_asked, PlotsAhead.started(None, 1) as one_trial:
        assert none_asked is None and one_trial is None
    with PlotsAhead.started(["optimization_history"], 1) as named:
        assert named is not None  # named plots are drawn for any study


def test_a_child_that_died_leaves_the_drawing_to_the_sweep(tmp_path: Path) -> None:
    url, name = stored_study(tmp_path)
    with PlotsAhead.started(None, 6) as ahead:
        ahead.open(url, name)
        ahead.process.kill()
        assert ahead.draw(tmp_path / "plots") is None
    assert not (tmp_path / "plots").exists()


def test_leaving_without_drawing_stops_the_child(tmp_path: Path) -> None:
    with PlotsAhead.started(None, 6) as ahead:
        pass
    assert ahead.process.poll() is not None


def test_the_child_exits_when_its_sweep_is_killed() -> None:
    make = "from vae_sweep.sweep.plots_ahead import PlotsAhead\nahead = PlotsAhead([])"
    assert child_gone_after_its_sweep_is_killed(make, wait_s=20)
