"""Damaged stores, failing servers and bad input never cost a traceback, a trial or a run
(docs/reliability.md, "Stores, servers and input"): real `vae-train` processes, real stores."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from sweep_processes import VAE_TRAIN, assert_budget_done, run, sweep_command, trials

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(VAE_TRAIN is None, reason="vae-train is not installed (pip install -e .)"),
]


def test_a_resumed_study_whose_choice_changed_is_refused_before_any_trial(tmp_path):
    first = run(sweep_command("hydra.sweeper.n_trials=1", "optimizer=choice(adam,rmsprop)", "tracking=none"), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    changed = run(sweep_command("hydra.sweeper.n_trials=3", "optimizer=choice(adam,sgd)", "tracking=none"), tmp_path)
    assert changed.returncode == 2, changed.stderr[-3000:]
    assert "Traceback" not in changed.stderr
    (line,) = [line for line in changed.stderr.splitlines() if "error" in line.lower()]
    assert line.startswith(
        "vae-train: error: hydra.sweeper.params.optimizer: study 's' searched it as choice(adam, rmsprop), "
        "now choice(adam, sgd); "
    ), line
    assert "hydra.sweeper.fresh=true" in line
    assert [t.state for t in trials(tmp_path)] == [TrialState.COMPLETE]  # nothing added, nothing run


def test_with_hydra_job_chdir_every_process_uses_the_stores_of_the_launch_folder(workdir):
    out = run(sweep_command("hydra.sweeper.n_trials=2", "hydra.job.chdir=true"), workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*.db")) == ["mlflow.db", "optuna.db"]
    assert_budget_done(workdir, budget=2)
