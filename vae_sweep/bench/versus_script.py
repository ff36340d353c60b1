"""Row 8: our sweep against the script a user would write instead (``handwritten.py``), as whole
processes from the shell prompt back to it, each in a fresh folder with new SQLite stores.

Three comparisons, interleaved repeat by repeat so that a slower minute of the machine hits
both sides: a 1-trial, 1-epoch sweep (start-up and end dominate it); a sweep of many trials,
whose wall time beyond training (wall time less the trials' own ``train_seconds``, which both
log the same way) is what each framework costs over the whole sweep; and the rerun of the
finished 1-trial study, which should only say that it is done.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
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


def timed(folder: Path, command: list[str]) -> WholeRun:
    """``command`` run in ``folder``; its wall time and the train_seconds its MLflow store holds."""
    start = time.perf_counter()
    run_in(folder, command)
    wall = time.perf_counter() - start
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=10_000)
    return WholeRun(wall, sum(r.data.metrics.get("train_seconds", 0.0) for r in runs))


def ours(trials: int, epochs: int) -> list[str]:
    return [sys.executable, "-c", APP, *OURS, f"hydra.sweeper.n_trials={trials}", f"trainer.epochs={epochs}"]


def script(trials: int, epochs: int) -> list[str]:
    return [sys.executable, str(HANDWRITTEN), "--trials", str(trials), "--epochs", str(epochs)]


def versus_script(trials: int, epochs: int, repeats: int) -> VersusScript:
    result = VersusScript(trials, epochs)
    for repeat in range(repeats):
        # Alternate which side goes first: the second of a pair finds the files in the page cache.
        sides = [("ours", ours), ("script", script)][:: 1 if repeat % 2 == 0 else -1]
        for name, command in sides:
            with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
                result.one_trial[name].append(timed(Path(folder), command(1, 1)))
                if name == "ours":
                    before = sweep_folders(Path(folder))
                    start = time.perf_counter()
                    run_in(Path(folder), command(1, 1))
                    result.rerun_s.append(time.perf_counter() - start)
                    result.rerun_made_folder |= sweep_folders(Path(folder)) != before
        for name, command in sides:
            with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
                result.sweep[name].append(timed(Path(folder), command(trials, epochs)))
    return result


def sweep_folders(folder: Path) -> list[Path]:
    """The sweeps' output folders (``multirun/DATE/TIME``) under ``folder``."""
    return sorted(path for path in folder.glob("multirun/*/*") if path.is_dir())
