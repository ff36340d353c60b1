"""A constructed study for vae-compare's fairness rules, written into a real MLflow SQLite store.

A real sweep's numbers are whatever training gives; these are chosen so that each rule changes
the answer: a pruned run whose last value moves a median, an option whose one run is the
single best value, failed runs with and without a logged value. Tests compute what to expect
from ``ConstructedStudy.runs`` themselves, not from vae-compare.
"""

from __future__ import annotations

import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from vae_sweep.names import epoch_key

EPOCHS = 4
# (optimizer, Optuna state, val_loss per epoch): completed runs log every epoch, pruned and
# failed ones stop early; a failed run may log nothing at all.
RUNS = (
    *(("adam", "COMPLETE", [final + 6, final + 3, final + 1, final]) for final in (40.0, 41.0, 42.0, 43.0)),
    ("adam", "PRUNED", [50.0, 47.0]),  # its last value (47, epoch 2) would move adam's median
    ("sgd", "COMPLETE", [41.0, 38.0, 36.0, 35.0]),  # the single best value, and sgd's only compared run
    ("sgd", "PRUNED", [60.0]),
    ("sgd", "PRUNED", [61.0]),
    *(("rmsprop with a long label", "COMPLETE", [f + 5, f + 2, f + 1, f]) for f in (44.0, 45.0, 46.0)),
    ("rmsprop with a long label", "FAIL", []),
    ("rmsprop with a long label", "FAIL", [55.0]),
)


@dataclass(frozen=True)
class Trial:
    number: int
    optimizer: str
    state: str
    history: list[float]
    run_id: str

    @property
    def last(self) -> float | None:
        return self.history[-1] if self.history else None

    def at(self, epoch: int) -> float | None:
        return self.history[epoch - 1] if len(self.history) >= epoch else None


@dataclass(frozen=True)
class ConstructedStudy:
    tracking_uri: str
    folder: Path
    name: str
    parent_run_id: str
    trials: list[Trial] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        """vae-compare's arguments for this study (no Optuna storage: importances are skipped)."""
        return [self.name, "--tracking-uri", self.tracking_uri, "--storage", f"sqlite:///{self.folder}/none.db", *args]

    def options(self) -> list[str]:
        return list(dict.fromkeys(t.optimizer for t in self.trials))

    def of(self, option: str, *states: str) -> list[Trial]:
        return [t for t in self.trials if t.optimizer == option and (not states or t.state in states)]

    def completed_median(self, option: str) -> float | None:
        values = [t.last for t in self.of(option, "COMPLETE")]
        return statistics.median(values) if values else None


def final_metrics(trial: int, final: float) -> dict[str, float]:
    """A completed run's final metrics; every third one has no active unit (collapsed)."""
    kl = 0.01 if trial % 3 == 0 else 2.0 + trial / 10
    return {"test_loss": final + 0.5, "test_recon": final + 0.5 - kl, "test_kl": kl, "active_units": float(trial % 3)}


@pytest.fixture(scope="module")
def constructed(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> ConstructedStudy:
    """``RUNS`` as the child runs of a study parent run, tagged the way a sweep tags them."""
    folder = tmp_path_factory.mktemp("constructed")
    shutil.copy(mlflow_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("vae-sweep", artifact_location=str(folder / "artifacts"))
    parent = client.create_run(
        experiment, tags={"vae_sweep.role": "study", "optuna.study_name": "constructed"}, run_name="constructed"
    )
    trials = []
    for number, (optimizer, state, history) in enumerate(RUNS):
        tags = {
            "mlflow.parentRunId": parent.info.run_id,
            "optuna.study_name": "constructed",
            "optuna.trial_state": state,
            "optuna.trial_number": str(number),
            "technique.optimizer": optimizer,
        }
        if state == "PRUNED":
            tags["pruned_at_epoch"] = str(len(history))
        run = client.create_run(experiment, tags=tags, run_name=f"trial-{number:03d}")
        metrics = [Metric(epoch_key("val_loss"), value, 0, step) for step, value in enumerate(history, start=1)]
        if state == "COMPLETE":
            metrics += [Metric(k, v, 0, EPOCHS) for k, v in final_metrics(number, history[-1]).items()]
        client.log_batch(run.info.run_id, metrics=metrics)
        client.log_param(run.info.run_id, "optimizer.lr", str(10 ** -(1 + number / 5)))
        client.set_terminated(run.info.run_id, "FAILED" if state == "FAIL" else "FINISHED")
        trials.append(Trial(number, optimizer, state, history, run.info.run_id))
    client.set_terminated(parent.info.run_id)
    return ConstructedStudy(uri, folder, "constructed", parent.info.run_id, trials)
