"""Row 8: our sweep against the script a user would write instead (``handwritten.py``), as whole
processes from the shell prompt back to it, each in a fresh folder with new SQLite stores.

Three comparisons, interleaved repeat by repeat so that a slower minute of the machine hits
both sides: a 1-trial, 1-epoch sweep (start-up and end dominate it); a sweep of many trials,
whose wall time beyond training (wall time less the trials' own ``train_seconds``, which both
log the same way) is what each framework costs over the whole sweep, and, read from the gaps
between the trials' MLflow runs, what it costs per trial once the process is warm; and the rerun
of the finished 1-trial study, which should only say that it is done.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.tracking import MlflowClient

from vae_sweep.bench.sweeps import APP, run_in

HANDWRITTEN = Path(__file__).with_name("handwritten.py")
# The same trials on both sides: study=quick's space, seed_mlp, digits, no pruner (the script has none).
OURS = ("-m", "study=quick", "hydra.sweeper.pruner.name=none")


@dataclass
class WholeRun:
    wall_s: float
    train_s: float  # the trials' train_seconds, summed
    # Per trial from the second to the last but one: from its MLflow run's start to the next one's,
    # less its train_seconds, plus the log_seconds the script's trials spend logging inside that
    # window: what one trial's bookkeeping costs once the process is warm.
    trial_beyond_ms: list[float] = field(default_factory=list)

    @property
    def beyond_training_s(self) -> float:
        return self.wall_s - self.train_s


@dataclass
class VersusScript:
    trials: int  # of the longer sweep
    epochs: int
    one_trial: dict[str, list[WholeRun]] = field(default_factory=lambda: {"ours": [], "script": []})
    sweep: dict[str, list[WholeRun]] = field(default_factory=lambda: {"ours": [], "script": []})
    rerun_s: list[float] = field(default_factory=list)  # the finished 1-trial study's rerun
    rerun_made_folder: bool = False  # whether a rerun wrote a new multirun/ folder

    @staticmethod
    def median(runs: list[WholeRun], beyond: bool = False) -> float:
        return statistics.median(r.beyond_training_s if beyond else r.wall_s for r in runs)

    @staticmethod
    def median_trial_ms(runs: list[WholeRun]) -> float:
        """The median over all repeats' warm trials of the time beyond training (NaN: none)."""
        trials = [ms for run in runs for ms in run.trial_beyond_ms]
        return statistics.median(trials) if trials else float("nan")


def timed(folder: Path, command: list[str], what: str) -> WholeRun:
    """``command`` run in ``folder``; its wall time and the train_seconds its MLflow store holds."""
    wall = run_in(folder, command, what)
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=10_000)
    trials = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.info.start_time)
    return WholeRun(
        wall,
        sum(r.data.metrics.get("train_seconds", 0.0) for r in runs),
        [
            later.info.start_time
            - trial.info.start_time
            - 1000 * (trial.data.metrics["train_seconds"] - trial.data.metrics.get("log_seconds", 0.0))
            for trial, later in itertools.pairwise(trials[1:])
            if "train_seconds" in trial.data.metrics  # a failed trial has none
        ],
    )


def ours(trials: int, epochs: int) -> list[str]:
    return [sys.executable, "-c", APP, *OURS, f"hydra.sweeper.n_trials={trials}", f"trainer.epochs={epochs}"]


def script(trials: int, epochs: int) -> list[str]:
    return [sys.executable, str(HANDWRITTEN), "--trials", str(trials), "--epochs", str(epochs)]


RUNS_PER_REPEAT = 5  # each side's 1-trial sweep and sweep of many, and our rerun


def versus_script(trials: int, epochs: int, repeats: int) -> VersusScript:
    result = VersusScript(trials, epochs)
    for repeat in range(repeats):
        # Alternate which side goes first: the second of a pair finds the files in the page cache.
        sides = [("ours", ours), ("script", script)][:: 1 if repeat % 2 == 0 else -1]
        for name, command in sides:
            with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
                result.one_trial[name].append(timed(Path(folder), command(1, 1), f"{name}, 1 trial"))
                if name == "ours":
                    before = sweep_folders(Path(folder))
                    result.rerun_s.append(run_in(Path(folder), command(1, 1), "ours, the finished study's rerun"))
                    result.rerun_made_folder |= sweep_folders(Path(folder)) != before
        for name, command in sides:
            with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
                what = f"{name}, {trials} x {epochs}"
                result.sweep[name].append(timed(Path(folder), command(trials, epochs), what))
    return result


def sweep_folders(folder: Path) -> list[Path]:
    """The sweeps' output folders (``multirun/DATE/TIME``) under ``folder``."""
    return sorted(path for path in folder.glob("multirun/*/*") if path.is_dir())
