"""End-to-end sweeps with our Optuna sweeper: `vae-train -m` with real joblib worker processes,
real SQLite Optuna storages and MLflow stores in temporary folders. The sweeping process is the
test's own (a process start saved per sweep); the crash and signal tests use real ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from helpers.in_process import run_here
from helpers.run_if import needs_vae_train, without_cuda
from helpers.tiny import TINY_SWEEP
from mlflow.tracking import MlflowClient

from vae_sweep.names import EPOCH_METRICS, FINAL_METRICS, epoch_key
from vae_sweep.track.urls import LOCAL_UI, TRAINING_VIEW

pytestmark = [
    pytest.mark.slow,
    needs_vae_train,
]


def sweep_arguments(*overrides: str, name: str = "s") -> list[str]:
    # No end-of-sweep plots (seconds of matplotlib) unless a test asks for them.
    return ["-m", "study=quick", f"hydra.sweeper.study_name={name}", "hydra.sweeper.plots=[]", *TINY_SWEEP, *overrides]


def sweep(cwd: Path, *overrides: str, name: str = "s") -> subprocess.CompletedProcess:
    """The sweep run in this process, on the stores in ``cwd``."""
    return run_here(cwd, sweep_arguments(*stores_in(cwd), *overrides, name=name))


def stores_in(cwd: Path) -> list[str]:
    """The default stores' files in ``cwd``, by absolute URLs (as a sweep run in-process needs)."""
    return [f"tracking.uri=sqlite:///{cwd}/mlflow.db", f"hydra.sweeper.storage=sqlite:///{cwd}/optuna.db"]


def load_study(cwd: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/optuna.db")


def runs(cwd: Path):
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    experiment = client.get_experiment_by_name("vae-sweep")
    all_runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in all_runs if r.data.tags.get("vae_sweep.role") == "study"]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def results(cwd: Path, sweep_dir: str) -> dict:
    return yaml.safe_load((cwd / sweep_dir / "optimization_results.yaml").read_text())


def test_quick_study_makes_one_parent_run_and_a_linked_child_run_per_trial(workdir):
    out = sweep(
        workdir, "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner.name=none", "hydra.sweep.dir=sweep",
        "hydra.sweeper.plots=null",  # every plot that fits the study
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    study = load_study(workdir)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert study.metric_names == ["val_loss"]  # what Optuna's plots and dashboard call the objective
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4  # each trial draws anew
    client, parents, children = runs(workdir)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.run_name == "s" and parent.info.status == "FINISHED"
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert sorted(by_number) == [0, 1, 2, 3]
    for trial in study.trials:
        child = by_number[trial.number]
        assert child.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["optuna.study_name"] == "s"
        assert child.data.tags["optuna.trial_state"] == "COMPLETE"
        assert {epoch_key(name) for name in EPOCH_METRICS} | set(FINAL_METRICS) <= set(child.data.metrics)
        assert child.data.params["optimizer.name"] == trial.params["optimizer"]
        assert float(child.data.params["optimizer.lr"]) == trial.params["optimizer.lr"]
    summary = results(workdir, "sweep")
    assert summary["best_value"] == study.best_value
    assert summary["best_trial"] == study.best_trial.number
    assert summary["best_run_id"] == study.best_trial.user_attrs["mlflow_run_id"]
    assert summary["reproduce"].startswith("vae-train study=quick")
    lines = (workdir / "sweep" / "optimization_results.yaml").read_text().splitlines()
    reproduce = next(line for line in lines if line.startswith("reproduce:"))
    assert len(summary["reproduce"]) > 80  # past the column where YAML's writer folds
    assert yaml.safe_load(reproduce)["reproduce"] == summary["reproduce"]  # on one line, to paste into a shell
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    drawn = ("optimization_history", "param_importances", "parallel_coordinate")
    assert artifacts == {f"plots/{name}.png" for name in drawn}
    # No pruner: no trial reports a curve, so no empty figure (nor Optuna's warning about it).
    assert "plot intermediate_values skipped: no trial reported intermediate values" in out.stdout + out.stderr
    assert "Results:" in out.stdout and "mlflow ui --backend-store-uri" in out.stdout
    assert f"then open {LOCAL_UI}/#/experiments/" in out.stdout and TRAINING_VIEW in out.stdout


def test_rerun_resumes_the_study_keeps_numbering_and_the_parent_run(workdir):
    assert sweep(workdir, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=first").returncode == 0

    def rerun(*overrides: str) -> None:
        outcome = sweep(workdir, *overrides)
        assert outcome.returncode == 0, outcome.stderr[-3000:]

    rerun("hydra.sweeper.n_trials=3", "hydra.sweep.dir=second")
    assert [t.number for t in load_study(workdir).trials] == [0, 1, 2]
    rerun("hydra.sweeper.n_trials=3", "hydra.sweep.dir=third")
    assert len(load_study(workdir).trials) == 3  # the budget is met: nothing to add
    _, parents, children = runs(workdir)
    assert len(parents) == 1
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == [0, 1, 2]
    assert (workdir / "second" / "2" / ".hydra" / "config.yaml").exists()  # job folder = trial number
    rerun("hydra.sweeper.n_trials=1", "hydra.sweeper.fresh=true", "hydra.sweep.dir=fresh")
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{workdir}/optuna.db")}
    assert len(names) == 2 and "s" in names  # a new study beside the old one, which is kept
    assert len(runs(workdir)[1]) == 2


def test_a_finished_studys_rerun_answers_from_the_study_alone(workdir):
    first = sweep(workdir, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=first")
    assert first.returncode == 0, first.stderr[-3000:]
    _, _, children = runs(workdir)
    # The same command again, in a process of its own: what it imports is its start-up time.
    script = (
        "import sys\n"
        "from vae_sweep.cli import train_app\n"
        "try:\n"
        "    train_app()\n"
        "finally:\n"
        "    print('imported:', sorted({'torch', 'mlflow'} & set(sys.modules)))\n"
    )
    argv = sweep_arguments(*stores_in(workdir), "hydra.sweeper.n_trials=2", "hydra.sweep.dir=second")
    again = subprocess.run(
        [sys.executable, "-c", script, *argv], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Study 's' is done: 2 trials (2 COMPLETE) for its budget of 2" in again.stdout
    best = next(line for line in first.stdout.splitlines() if line.startswith("Best value"))
    assert best in again.stdout.splitlines()
    assert f"Results:   {workdir / 'first' / 'optimization_results.yaml'}" in again.stdout
    assert "hydra.sweeper.n_trials=12" in again.stdout and "hydra.sweeper.fresh=true" in again.stdout
    assert "imported: []" in again.stdout  # neither torch nor MLflow
    assert not (workdir / "second").exists()
    assert len(runs(workdir)[2]) == len(children)
    # A smaller budget is within the study's too; another fixed override is another request.
    assert "is done" in sweep(workdir, "hydra.sweeper.n_trials=1", "hydra.sweep.dir=third").stdout
    other = sweep(workdir, "hydra.sweeper.n_trials=2", "trainer.seed=1", "hydra.sweep.dir=fourth")
    assert other.returncode == 0 and "is done" not in other.stdout
    assert (workdir / "fourth" / "optimization_results.yaml").exists()
    grown = sweep(workdir, "hydra.sweeper.n_trials=3", "hydra.sweep.dir=fifth")
    assert grown.returncode == 0 and "Study 's': 3 trials (" in grown.stdout
    assert len(load_study(workdir).trials) == 3


def test_grid_sampler_enumerates_every_combination_once(workdir):
    out = sweep(
        workdir,
        "hydra.sweeper.sampler.name=grid",
        "~hydra.sweeper.sampler.options.n_startup_trials",
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.pruner.name=none",
        "optimizer=choice(adam,rmsprop)",
        "optimizer.lr=choice(0.001,0.003)",
        "model.activation=choice(relu,tanh)",
    )
    assert out.returncode == 0, out.stderr
    study = load_study(workdir)
    combos = sorted(
        (t.params["optimizer"], t.params["optimizer.lr"], t.params["model.activation"]) for t in study.trials
    )
    assert len(combos) == 8 == len(set(combos))  # n_trials is capped at the grid's size


def test_pruner_stops_a_bad_trial_and_keeps_its_curve(workdir):
    out = sweep(
        workdir,
        "hydra.sweeper.sampler.name=grid",
        "~hydra.sweeper.sampler.options.n_startup_trials",
        "hydra.sweeper.pruner.name=threshold",
        "~hydra.sweeper.pruner.options.n_startup_trials",  # quick's median-pruner option
        "+hydra.sweeper.pruner.options.upper=1000",
        "optimizer=adam",  # fixes the study's searched optimizer and lr
        "optimizer.lr=0.003",
        "model.gaussian_std=0.001",  # a Gaussian likelihood this sharp gives a huge loss
        "model.likelihood=choice(bernoulli,gaussian)",
        "trainer.epochs=3",
    )
    assert out.returncode == 0, out.stderr
    states = {t.params["model.likelihood"]: t for t in load_study(workdir).trials}
    assert states["bernoulli"].state.name == "COMPLETE"
    assert states["gaussian"].state.name == "PRUNED"
    client, _, children = runs(workdir)
    pruned = next(r for r in children if r.data.tags["optuna.trial_state"] == "PRUNED")
    assert pruned.info.status == "FINISHED"
    epoch = int(pruned.data.tags["pruned_at_epoch"])
    assert epoch < 3  # stopped before its last epoch, its curve kept up to there
    curve = client.get_metric_history(pruned.info.run_id, epoch_key("val_loss"))
    assert [m.step for m in curve] == list(range(1, epoch + 1))
    # The runs table tells it from a completed trial: by its name and its description.
    assert pruned.info.run_name.endswith(f"(pruned at epoch {epoch})")
    assert pruned.data.tags["mlflow.note.content"].startswith(f"Pruned after epoch {epoch}:")
    complete = next(r for r in children if r.data.tags["optuna.trial_state"] == "COMPLETE")
    assert "pruned" not in complete.info.run_name and "mlflow.note.content" not in complete.data.tags


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(workdir):
    out = sweep(
        workdir,
        "hydra.sweeper.sampler.name=grid",
        "~hydra.sweeper.sampler.options.n_startup_trials",
        "hydra.sweeper.pruner.name=none",
        "optimizer=sgd",
        "optimizer.lr=choice(0.01,1000000.0)",
    )
    assert out.returncode == 0, out.stderr
    trials = {t.params["optimizer.lr"]: t for t in load_study(workdir).trials}
    assert trials[0.01].state.name == "COMPLETE"
    assert trials[1e6].state.name == "FAIL"
    assert trials[1e6].user_attrs["failure_reason"] == "nan_loss"
    _, _, children = runs(workdir)
    failed = next(r for r in children if r.info.status == "FAILED")
    assert failed.data.tags["failure_reason"] == "nan_loss"
    assert failed.data.tags["optuna.trial_state"] == "FAIL"


def test_a_sweep_whose_trials_all_fail_exits_non_zero(workdir):
    out = sweep(workdir, "hydra.sweeper.n_trials=2", "optimizer=sgd", "optimizer.lr=1000000.0")
    assert out.returncode != 0
    assert "all 2 trials of study 's' failed" in out.stderr
    assert [t.state.name for t in load_study(workdir).trials] == ["FAIL", "FAIL"]


def test_max_failure_rate_stops_claiming_trials_and_says_why(workdir):
    out = sweep(
        workdir, "hydra.sweeper.n_trials=6", "hydra.sweeper.max_failure_rate=0.5", "optimizer=sgd", "optimizer.lr=1e6"
    )
    assert out.returncode != 0
    assert "more than 50% of the trials failed" in out.stderr and "stopped early" in out.stderr
    states = [t.state.name for t in load_study(workdir).trials]
    assert states == ["FAIL"] * 3 + ["WAITING"] * 3  # nothing is lost: the budget waits for a fix


def test_trials_below_the_minimum_of_active_units_are_infeasible_in_optuna_and_never_best(workdir):
    out = sweep(workdir, "hydra.sweeper.n_trials=2", "hydra.sweeper.min_active_units=99", "hydra.sweep.dir=sweep")
    assert out.returncode == 0, out.stderr
    client, (parent,), _ = runs(workdir)
    trials = load_study(workdir).trials
    for trial in trials:  # the constraint Optuna's samplers read: min_active_units - active_units, > 0 here
        active = client.get_run(trial.user_attrs["mlflow_run_id"]).data.metrics["active_units"]
        assert trial.state.name == "COMPLETE" and trial.constraints == {"active_units": 99 - active}
    assert "No feasible trial: every complete trial has fewer than hydra.sweeper.min_active_units=99" in out.stdout
    assert "Best value" not in out.stdout and "best_value" not in parent.data.metrics
    assert results(workdir, "sweep")["feasible"] == 0


def test_collapse_patience_prunes_trials_whose_latent_space_stays_unused_after_the_warm_up(workdir):
    """beta 50 collapses the posterior of every trial: with patience 2, each stops after two
    validated epochs without an active unit under full KL weight, long before its sixth epoch."""
    out = sweep(
        workdir,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.collapse_patience=2",
        "regularization=kl_warmup",
        "regularization.warmup_epochs=1",
        "regularization.beta=50",
        "trainer.epochs=6",
    )
    assert out.returncode == 0, out.stderr
    client, _, _ = runs(workdir)
    for trial in load_study(workdir).trials:
        assert trial.state.name == "PRUNED" and trial.user_attrs["vae_sweep.pruned_for"] == "posterior_collapse"
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        history = client.get_metric_history(run.info.run_id, "epoch/val_active_units")
        assert [m.value for m in history][-2:] == [0.0, 0.0]
        assert run.data.tags["pruned_at_epoch"] == str(len(history)) and len(history) < 6


def test_multi_objective_study_reports_its_pareto_front(workdir):
    argv = ["-m", "study=pareto", "hydra.sweeper.n_trials=3", "hydra.sweep.dir=sweep", *TINY_SWEEP, *stores_in(workdir)]
    out = run_here(workdir, argv)
    assert out.returncode == 0, out.stderr
    study = load_study(workdir, "pareto")
    assert len(study.directions) == 2
    assert study.metric_names == ["test_recon", "test_kl"]  # the pareto study's two objectives, named
    front = results(workdir, "sweep")["best_trials"]
    assert {entry["trial"] for entry in front} == {t.number for t in study.best_trials}
    assert all(len(entry["values"]) == 2 for entry in front)


def test_a_plain_name_switches_the_study_files_sampler_and_pruner(workdir):
    """``hydra.sweeper.pruner=none`` and ``sampler=random`` drop the study file's options with them."""
    argv = ["-m", "study=techniques", "hydra.sweeper.n_trials=2", *TINY_SWEEP, *stores_in(workdir)]
    out = run_here(workdir, [*argv, "hydra.sweeper.pruner=none", "hydra.sweeper.sampler=random"])
    assert out.returncode == 0, out.stderr
    study = load_study(workdir, "techniques")
    # The plain name drops the study file's seed with its options: the draws differ from run to
    # run, and a diverging one (adadelta at lr 3, say) is a trial failed for its own reason (nan_loss).
    outcomes = [(t.state.name, t.user_attrs.get("failure_reason", "")) for t in study.trials]
    assert len(outcomes) == 2
    assert all(state == "COMPLETE" or reason == "nan_loss" for state, reason in outcomes), outcomes
    _, parents, _ = runs(workdir)
    settings = parents[0].data.params  # the study's settings, as the sweep used them
    assert (settings["sampler"], settings["pruner"]) == ("random", "none")
    assert not any(key.startswith(("sampler.multivariate", "pruner.n_warmup_steps")) for key in settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer=choice(adam,adamax)"], "optimizer=adamax: no such option; did you mean optimizer=adam?"),
        (["model.encoder_dropout=interval(0.0,1.5)"], "model.encoder_dropout: must be in [0, 1), got 1.5"),
        (["hydra.sweeper.sampler.name=annealing"], "hydra.sweeper.sampler.name: unknown sampler 'annealing'"),
        (["hydra.sweeper.direction=[minimize,minimize]"], "hydra.sweeper.direction: 2 direction(s)"),
        (["optimizer.lr=interval(0.1,0.01)"], "hydra.sweeper.params.optimizer.lr"),
        (
            ["tracking.uri=http://127.0.0.1:9"],
            "tracking.uri: cannot reach the MLflow tracking server at http://127.0.0.1:9",
        ),
    ],
)
def test_bad_sweep_settings_stop_before_any_trial_with_one_clear_message(tmp_path, overrides, message):
    out = run_here(tmp_path, sweep_arguments(*overrides))
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "optuna.db").exists()  # checked before the study exists


@without_cuda
def test_cuda_without_a_gpu_stops_the_sweep_before_its_study_exists(tmp_path):
    out = run_here(tmp_path, sweep_arguments("trainer.device=cuda"))
    assert out.returncode == 2
    assert "vae-train: error: trainer.device: cuda was asked for but torch sees no CUDA device" in out.stderr
    assert not (tmp_path / "optuna.db").exists()  # no study, no budget spent on trials that cannot run
