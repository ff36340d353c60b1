"""Progress a sweep shows: each trial's start (its sampled values) and end (its own duration,
the study's progress and ETA), and the sweep's status line while its workers run."""

from __future__ import annotations

import datetime

import optuna
import pytest
from helpers.in_process import run_here
from helpers.run_if import needs_vae_train
from helpers.sweep_processes import run, sweep_command
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from vae_sweep.sweep.progress import StudyProgress, eta_s, progress_line

START = datetime.datetime(2026, 12, 1, 12, 0, 0)


def trial(state: TrialState, seconds: float | None = None):
    """A trial in ``state`` that ran for ``seconds`` (finished ones)."""
    made = create_trial(
        state=TrialState.COMPLETE if state is TrialState.COMPLETE else TrialState.FAIL,
        value=1.0 if state is TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
    )
    made.state = state
    made.datetime_start = START if state is not TrialState.WAITING else None
    made.datetime_complete = START + datetime.timedelta(seconds=seconds) if seconds is not None else None
    return made


def test_the_eta_is_the_median_duration_times_the_trials_left_over_the_workers() -> None:
    trials = [trial(TrialState.COMPLETE, 10), trial(TrialState.PRUNED, 2), trial(TrialState.COMPLETE, 30)]
    trials += [trial(TrialState.RUNNING), *(trial(TrialState.WAITING) for _ in range(5))]
    assert eta_s(trials, parallel=2) == 10 * 6 / 2
    assert eta_s(trials[3:], parallel=2) is None  # nothing finished yet: no guess
    assert eta_s(trials[:3], parallel=2) == 0.0  # nothing left
    line = progress_line(trials, also_working=1)  # the one running, and a worker between trials
    assert line == "3/9 done (2 COMPLETE, 1 PRUNED), 1 running, ETA 30s"


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_best_so_far_from_one_read_of_the_trials_is_optunas_best_trial(direction: str) -> None:
    study = optuna.create_study(direction=direction)
    assert StudyProgress.read(study).best_line() == "-"
    for value, state in [(3.0, "COMPLETE"), (1.0, "PRUNED"), (2.0, "COMPLETE"), (None, "FAIL"), (4.0, "COMPLETE")]:
        trial = study.ask()
        study.tell(trial, value if state != "PRUNED" else None, state=getattr(TrialState, state))
    progress = StudyProgress.read(study)
    assert progress.best().number == study.best_trial.number == (2 if direction == "minimize" else 4)
    assert progress.best_line() == f"{study.best_value:.4f} (trial {study.best_trial.number})"
    assert progress.counts() == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1}


def test_the_best_so_far_is_the_best_trial_that_meets_its_constraints_as_in_optuna() -> None:
    study = optuna.create_study()
    for value, constraint in [(1.0, 2.0), (3.0, 0.0), (2.0, 1.0), (4.0, -1.0)]:  # feasible when <= 0
        trial = study.ask()
        trial.set_constraint("active_units", constraint)
        study.tell(trial, value)
    progress = StudyProgress.read(study)
    assert progress.best().number == study.best_trial.number == 1  # value 3.0: 1.0 and 2.0 are infeasible
    assert progress.best_line() == "3.0000 (trial 1)"


def test_a_multi_objective_studys_best_so_far_is_its_pareto_front() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    for values in [(1.0, 3.0), (3.0, 1.0), (4.0, 4.0)]:
        study.tell(study.ask(), values)
    progress = StudyProgress.read(study)
    assert progress.best() is None  # no single best: the parent run records none
    assert progress.best_line() == f"{len(study.best_trials)} on the Pareto front" == "2 on the Pareto front"


@pytest.mark.slow
@needs_vae_train
def test_each_trial_says_when_it_starts_with_its_values_and_when_it_ends_with_its_duration(workdir) -> None:
    done = run(sweep_command("hydra.sweeper.n_trials=3", "hydra.sweeper.pruner.name=none"), workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    for number in range(3):
        started = [line for line in lines if f"trial {number} started ({number + 1}/3): optimizer=" in line]
        assert len(started) == 1 and "optimizer.lr=" in started[0], lines
        ended = [line for line in lines if f"trial {number} COMPLETE in " in line]
        assert len(ended) == 1 and f"{number + 1}/3 done ({number + 1} COMPLETE)" in ended[0], lines
    assert lines.index(started[0]) < lines.index(ended[0])


@pytest.mark.slow
@needs_vae_train
def test_the_sweep_says_how_far_the_study_is_while_its_workers_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("vae_sweep.sweep.sweeper.STATUS_INTERVAL_S", 0.5)  # every 30 s in a real sweep
    stores = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"]
    argv = [*sweep_command("hydra.sweeper.n_trials=2", "trainer.epochs=40", *stores)[1:]]
    done = run_here(tmp_path, argv)
    assert done.returncode == 0, done.stderr[-3000:]
    status = [line for line in (done.stdout + done.stderr).splitlines() if "study 's': " in line]
    assert status, done.stdout[-3000:]
    assert all("/2 done" in line for line in status)


@pytest.mark.slow
@needs_vae_train
def test_the_sweep_says_how_it_runs_in_one_line_instead_of_the_launchers_job_listing(tmp_path) -> None:
    """Hydra's joblib launcher lists its jobs ("Joblib.Parallel(...)", "#0 : study=quick"), but a
    job is a worker that runs trial after trial: "#0" was not trial 0."""
    stores = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"]
    done = run_here(tmp_path, sweep_command("hydra.sweeper.n_trials=1", "hydra.sweep.dir=sweep", *stores)[1:])
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout + done.stderr
    assert "Joblib.Parallel(" not in text and "Launching jobs" not in text and "#0 : " not in text, text
    assert f"Study 's' in sqlite:///{tmp_path}/optuna.db: 1 trials, 1 at a time through the joblib launcher" in text
    assert "output in sweep" in text


@pytest.mark.slow
@needs_vae_train
@pytest.mark.parametrize("quiet", [False, True])
def test_a_quiet_sweep_prints_the_status_failures_and_summary_but_no_line_per_trial(tmp_path, monkeypatch, quiet):
    """The basic launcher runs the trials in the sweep's own process, so every line is captured."""
    monkeypatch.setattr("vae_sweep.sweep.sweeper.STATUS_INTERVAL_S", 0.5)  # every 30 s in a real sweep
    stores = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"]
    argv = sweep_command(
        f"hydra.sweeper.quiet={str(quiet).lower()}", "hydra/launcher=basic", "hydra.sweeper.sampler=grid",
        "hydra.sweeper.pruner=none", "optimizer=sgd", "optimizer.lr=choice(0.01,1000000.0)", "trainer.epochs=30",
        *stores,
    )[1:]  # fmt: skip
    done = run_here(tmp_path, argv)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    per_trial = [line for line in lines if " started (" in line or " COMPLETE in " in line]
    assert len(per_trial) == (0 if quiet else 3), per_trial  # two starts, one completion
    failed = [line for line in lines if " FAIL in " in line]
    assert len(failed) == 1 and "[WARNING]" in failed[0] and "nan_loss" in failed[0], lines
    assert any("study 's': " in line and "/2 done" in line for line in lines), lines
    assert "Study 's': 2 trials (" in done.stdout and "Best value " in done.stdout
