"""A sweep worker: the task function a Hydra launcher runs ``n_jobs`` times.

Each worker claims a trial from the storage, composes that trial's config exactly as Hydra
would for a multirun job, runs it with Hydra's ``run_job`` (its own output folder, logs and
``.hydra/``), tells Optuna the outcome, and claims the next one. No batch barrier: a worker
whose trial finishes or is pruned takes the next trial at once.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import optuna
from hydra.core.utils import JobReturn, JobStatus, run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from vae_sweep.errors import ConfigError, TrainingPruned
from vae_sweep.sweep.compose import TrialComposer
from vae_sweep.sweep.plan import SweepPlan
from vae_sweep.sweep.study import claim_trial, fail_stale_trials, heartbeat
from vae_sweep.sweep.trial_link import FAILURE_REASON_ATTR, RUN_ID_ATTR

log = logging.getLogger(__name__)
MIN_TRIALS_FOR_FAILURE_RATE = 3
# MLflow's client retries a call to a tracking server that went away for about 4 minutes; in a
# sweep that would stall every trial. A few retries with backoff (about 10 s), then the trial
# goes on and tries once more at its end (vae_sweep.tracking.MlflowRun).
TRACKING_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


@dataclass
class Outcome:
    state: TrialState
    values: list[float] | None = None
    reason: str | None = None


@dataclass
class WorkerSummary:
    worker: int
    trials: dict[int, str] = field(default_factory=dict)  # trial number -> final state
    stopped_for_failures: bool = False


def outcome_of(job: JobReturn) -> Outcome:
    """Optuna's view of a finished job: COMPLETE with values, PRUNED, or FAIL with a reason."""
    if job.status is not JobStatus.COMPLETED:
        error = job._return_value  # run_job stores the exception here; .return_value would re-raise it
        if isinstance(error, (TrainingPruned, optuna.TrialPruned)):
            return Outcome(TrialState.PRUNED)
        return Outcome(TrialState.FAIL, reason=f"{type(error).__name__}: {error}")
    value = job.return_value
    try:
        values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    except (TypeError, ValueError):
        return Outcome(TrialState.FAIL, reason=f"the task function returned {value!r}, not the objective value(s)")
    if not all(math.isfinite(v) for v in values):
        return Outcome(TrialState.FAIL, reason="nan_loss")
    return Outcome(TrialState.COMPLETE, values=values)


class TrialWorker:
    """Picklable task function: process-based launchers ship it, with the plan, to each worker."""

    def __init__(
        self, plan: SweepPlan, hydra_context: HydraContext, master_config: DictConfig, task_function: TaskFunction
    ) -> None:
        self.plan = plan
        self.hydra_context = hydra_context
        self.master_config = master_config
        self.task_function = task_function

    def __call__(self, worker_cfg: DictConfig) -> WorkerSummary:
        from hydra.core.hydra_config import HydraConfig

        worker = int(HydraConfig.get().job.num)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):  # a scheduler's SIGTERM acts like Ctrl-C
                signal.signal(signum, interrupt)
        if self.plan.local_workers:
            limit_torch_threads(self.plan.n_jobs)
        preload(tracking=self.plan.tracking_uri is not None)
        for variable, value in TRACKING_RETRIES.items():  # the user's own settings win
            os.environ.setdefault(variable, value)
        storage = self.plan.storage()
        summary = WorkerSummary(worker)
        started = time.monotonic()
        while True:
            study = self.plan.load_study(storage)
            fail_stale_trials(study)
            if failure_rate_exceeded(study, self.plan.max_failure_rate):
                summary.stopped_for_failures = True
                break
            if INTERRUPTED.is_set():  # the interrupt landed where Python could not raise it
                raise KeyboardInterrupt("interrupted")
            claimed = claim_trial(storage, self.plan.study_name, lambda number: self.plan.load_study(storage, number))
            if claimed is None:
                break
            trial, trial_id = claimed
            with heartbeat(storage, trial_id):
                try:
                    outcome = self.run_trial(trial)
                except KeyboardInterrupt:  # Ctrl-C or SIGTERM: close the trial, queue its retry, stop
                    fail_interrupted(study, storage, trial, trial_id)
                    raise
            tell(study, trial, outcome)
            summary.trials[trial.number] = outcome.state.name
            self.after_trial(study, storage.get_trial(trial_id), outcome, time.monotonic() - started)
        return summary

    def run_trial(self, trial: optuna.Trial) -> Outcome:
        values = self.plan.space.sample(trial)
        overrides = [*self.plan.base_overrides, *self.plan.space.overrides(values)]
        try:
            config = self.composer.compose(overrides)
        except Exception as error:  # a sampled combination Hydra cannot compose
            return Outcome(TrialState.FAIL, reason=f"{type(error).__name__}: {error}")
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{trial.number}"
            config.hydra.job.num = trial.number
            config.hydra.sweeper.study_name = self.plan.study_name
            config.hydra.sweeper.storage = self.plan.storage_url
        job = run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        outcome = outcome_of(job)
        if outcome.reason:
            trial.set_user_attr(FAILURE_REASON_ATTR, outcome.reason[:2000])
        return outcome

    @functools.cached_property
    def composer(self) -> TrialComposer:
        """Built in the worker's process, where it caches one composition per set of group choices."""
        return TrialComposer(self.hydra_context.config_loader, self.master_config)

    @functools.cached_property
    def mlflow_client(self):  # -> MlflowClient, imported lazily
        """One client (and one server check) per worker process, not one per trial."""
        from vae_sweep.sweep.parent_run import tracking_client

        return tracking_client(self.plan.tracking_uri)

    def after_trial(
        self, study: optuna.Study, frozen: optuna.trial.FrozenTrial, outcome: Outcome, elapsed: float
    ) -> None:
        """One progress line; the trial's state and the best so far onto MLflow."""
        number = frozen.number
        best = best_summary(study)
        value = ", ".join(f"{v:.4f}" for v in outcome.values) if outcome.values else outcome.reason or "-"
        log.info("trial %d %s: %s | best %s | %.1fs", number, outcome.state.name, value, best, elapsed)
        if self.plan.tracking_uri is None:
            return
        from vae_sweep.tracking import TRACKING_ERRORS

        try:
            self.record_in_mlflow(study, frozen, outcome)
        except (ConfigError, *TRACKING_ERRORS) as error:  # the trial itself is safe in Optuna
            log.warning("could not record trial %d's state and the study's progress in MLflow: %s", number, error)

    def record_in_mlflow(self, study: optuna.Study, frozen: optuna.trial.FrozenTrial, outcome: Outcome) -> None:
        from mlflow.entities import RunTag

        from vae_sweep.sweep.parent_run import record_progress

        client = self.mlflow_client
        run_id = frozen.user_attrs.get(RUN_ID_ATTR)
        if run_id:
            tags = [RunTag("optuna.trial_state", outcome.state.name)]
            if outcome.reason:
                tags.append(RunTag(FAILURE_REASON_ATTR, outcome.reason[:5000]))
            client.log_batch(run_id, tags=tags)
        if self.plan.parent_run_id:
            record_progress(client, self.plan.parent_run_id, study)


INTERRUPTED = threading.Event()


def interrupt(signum: int, frame: object) -> None:
    """Stop the running trial; the flag stops the worker even if Python swallows the exception
    (it does when the signal lands in a finalizer), after the trial finishes cleanly."""
    INTERRUPTED.set()
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def fail_interrupted(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial, trial_id: int) -> None:
    """An interrupted trial did not fail on its own: mark it FAIL ("interrupted") and enqueue a
    retry with its parameters, as for a worker that died, so the next run picks it up."""
    trial.set_user_attr(FAILURE_REASON_ATTR, "interrupted")
    tell(study, trial, Outcome(TrialState.FAIL, reason="interrupted"))
    retry = storage.get_heartbeat_stale_trial_callback()
    if retry is not None:
        retry(study, storage.get_trial(trial_id))


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    try:
        study.tell(trial, values=outcome.values, state=outcome.state)
    except RuntimeError as error:
        # GridSampler calls study.stop() once its grid is exhausted, which only works inside
        # study.optimize(); the trial itself is already stored as finished.
        if "Study.stop" not in str(error):
            raise


def best_summary(study: optuna.Study) -> str:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return "-"
    if len(study.directions) > 1:
        return f"{len(study.best_trials)} on the Pareto front"
    return f"{study.best_value:.4f} (trial {study.best_trial.number})"


def failure_rate_exceeded(study: optuna.Study, max_rate: float) -> bool:
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    if len(finished) < MIN_TRIALS_FOR_FAILURE_RATE:
        return False
    failed = sum(1 for t in finished if t.state is TrialState.FAIL)
    return failed / len(finished) > max_rate


def preload(*, tracking: bool) -> None:
    """Pay the process's one-time costs (seconds of imports) before claiming a trial, so that a
    trial's duration, and a sweep's trials per hour, measure trials rather than the start-up."""
    import torch

    importlib.import_module("vae_sweep.experiment")  # the trainer, its models and data sets
    # The first call imports the backends it configures (seconds); this one changes nothing.
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    if tracking:
        importlib.import_module("vae_sweep.tracking")  # mlflow


def limit_torch_threads(n_jobs: int) -> None:
    """Share the cores between the trials running at once, so the CPU is not oversubscribed."""
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // n_jobs))
