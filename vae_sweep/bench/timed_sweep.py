"""Run a real ``vae-train -m`` sweep with timers around the framework's steps, for row 3.

``python -m vae_sweep.bench.timed_sweep TIMINGS.json OVERRIDE...`` wraps the functions a sweep
trial goes through (Hydra composition and ``run_job``, Optuna claim/report/tell, each kind of
MLflow call, the training itself) and writes, per trial, the milliseconds spent in each step.
Times are exclusive: a timed step called inside another is subtracted from the outer one, so
the steps of a trial add up to its wall time. Needs a launcher that runs trials in this process
(joblib with ``n_jobs=1``).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vae_sweep.bench.scale import current_rss_mb

TRAINING = "training (bare)"
NOT_STEPS = ("period", "rss_mb")  # the other fields of a trial's record


class Timers:
    """Exclusive wall time per label, cut into one record per finished trial."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.trials: list[dict[str, float]] = []
        self.stack: list[float] = []  # time spent in timed children of each open step
        self.last_end = time.perf_counter()

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append(0.0)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.current[label] += elapsed - self.stack.pop()
                if self.stack:
                    self.stack[-1] += elapsed

        return timed

    def end_trial(self) -> None:
        """Close the trial's record; its ``period`` is the wall time since the previous trial ended."""
        now = time.perf_counter()
        record = {label: seconds * 1000 for label, seconds in self.current.items()}
        self.trials.append({**record, "period": (now - self.last_end) * 1000, "rss_mb": current_rss_mb()})
        self.current, self.last_end = defaultdict(float), now


def install(timers: Timers) -> None:
    """Wrap the steps of a sweep trial where the sweep code looks them up."""
    from mlflow.tracking import MlflowClient

    from vae_sweep.sweep import compose, space, trial_link, worker
    from vae_sweep.track import run as tracking
    from vae_sweep.track import training

    def patch(owner: Any, name: str, label: str) -> None:
        setattr(owner, name, timers.wrap(label, getattr(owner, name)))

    patch(compose.TrialComposer, "compose", "Hydra: compose the trial's config")
    patch(worker, "run_job", "Hydra: run_job (logging setup, .hydra/*.yaml)")
    patch(training, "train_and_track", "vae-sweep: validate the config")  # vae-train imports it when it runs
    patch(training, "train", TRAINING)
    patch(space.SearchSpace, "sample", "Optuna: sample the parameters")
    optuna_steps = "Optuna: claim, tell, read the trials, stale and failure checks"
    for name in ("claim_trial", "tell", "fail_stale_trials", "fail_dead_trials", "failure_rate_exceeded"):
        patch(worker, name, optuna_steps)
    patch(worker.SweepPlan, "load_study", optuna_steps)
    worker.StudyProgress.read = classmethod(timers.wrap(optuna_steps, worker.StudyProgress.read.__func__))
    patch(trial_link, "link_current_job", "Optuna: link the job to its trial")
    patch(trial_link.PruningCallback, "on_epoch_end", "Optuna: report + should_prune each epoch")
    tracking.MlflowRun.start = classmethod(
        timers.wrap("MLflow: create the run, params, tags", tracking.MlflowRun.start.__func__)
    )
    patch(tracking.MlflowRun, "on_epoch_end", "MLflow: metrics")
    patch(tracking.MlflowRun, "flush", "MLflow: metrics")
    patch(tracking.MlflowRun, "upload", "MLflow: artifacts (config.yaml, state_dict, images)")
    patch(tracking, "image_grid", "MLflow: images (drawn, PNG)")
    patch(tracking, "write_png", "MLflow: images (drawn, PNG)")
    patch(MlflowClient, "set_terminated", "MLflow: end the run")
    after_trial = timers.wrap("MLflow: trial state + parent run progress", worker.TrialWorker.after_trial)

    def after_trial_then_cut(self: Any, *args: Any, **kwargs: Any) -> None:
        after_trial(self, *args, **kwargs)
        timers.end_trial()

    worker.TrialWorker.after_trial = after_trial_then_cut


def main(argv: list[str]) -> int:
    out, overrides = Path(argv[0]), argv[1:]
    timers = Timers()
    install(timers)
    from vae_sweep.cli import train_app

    sys.argv = ["vae-train", *overrides]
    try:
        train_app()
    finally:
        out.write_text(json.dumps(timers.trials, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
