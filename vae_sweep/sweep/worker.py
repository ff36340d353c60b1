"""A sweep worker: the task function a Hydra launcher runs ``n_jobs`` times.

Each worker claims a trial from the storage, composes that trial's config exactly as Hydra
would for a multirun job, runs it with Hydra's ``run_job`` (its own output folder, logs and
``.hydra/``), tells Optuna the outcome, and claims the next one. No batch barrier: a worker
whose trial finishes or is pruned takes the next trial at once. When none is left to claim,
it waits for trials that other processes still run (their heartbeat may yet expire, and the
retry must not be left behind), then returns.

Signals (``vae_sweep.interrupts``) stop a worker cleanly at any moment: the worker itself is
shielded, and only training (inside ``train_and_track``) raises. A trial claimed but not yet
training, or interrupted while training, is failed as ``interrupted`` with its retry queued; a
trial whose training had finished is recorded as it ended. A local worker whose sweep process
disappeared (killed) stops the same way, instead of going on alone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import optuna
from hydra.core.utils import JobReturn, JobStatus, run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from vae_sweep import interrupts
from vae_sweep.errors import ConfigError, TrainingPruned, is_disk_full
from vae_sweep.garbage import collect_nothing_at_exit, hold_full_collections, release_after_startup
from vae_sweep.names import DISK_FULL, FAILURE_REASON_ATTR, INTERRUPTED, RUN_ID_ATTR, TRIAL_STATE_TAG, WORKER_DIED
from vae_sweep.sweep.background import repeating
from vae_sweep.sweep.compose import TrialComposer
from vae_sweep.sweep.owners import Owner, host_identity, is_gone, this_process
from vae_sweep.sweep.plan import SweepPlan
from vae_sweep.sweep.progress import StudyProgress, duration_s, format_duration, progress_line
from vae_sweep.sweep.study import claim_trial, fail_dead_trials, fail_stale_trials, heartbeat, owner_of
from vae_sweep.sweep.verbosity import detail_level, quieted

log = logging.getLogger(__name__)
MIN_TRIALS_FOR_FAILURE_RATE = 3
WAIT_POLL_S = 1.0  # how often a worker with nothing to claim looks at the trials others run
WAIT_LOG_S = 30.0  # and how often it says what it waits for
# MLflow's client retries a call to a tracking server that went away for about 4 minutes; in a
# sweep that would stall every trial. A few retries with backoff (about 10 s), then the trial
# goes on and tries once more at its end (vae_sweep.track.run.MlflowRun).
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
    interrupted: str | None = None  # the signal that stopped it
    disk_full: str | None = None  # the error that showed the disk was full


def outcome_of(job: JobReturn, n_objectives: int) -> Outcome:
    """Optuna's view of a finished job: COMPLETE with values, PRUNED, or FAIL with a reason."""
    if job.status is not JobStatus.COMPLETED:
        error = job._return_value  # run_job stores the exception here; .return_value would re-raise it
        if isinstance(error, (TrainingPruned, optuna.TrialPruned)):
            return Outcome(TrialState.PRUNED)
        if is_disk_full(error):  # the machine's fault, not the trial's: retried once there is space
            return Outcome(TrialState.FAIL, reason=DISK_FULL)
        return Outcome(TrialState.FAIL, reason=f"{type(error).__name__}: {error}")
    value = job.return_value
    try:
        values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    except (TypeError, ValueError):
        return Outcome(TrialState.FAIL, reason=f"the task function returned {value!r}, not the objective value(s)")
    if len(values) != n_objectives:
        return Outcome(
            TrialState.FAIL,
            reason=f"the task function returned {len(values)} value(s) for {n_objectives} direction(s) "
            "(hydra.sweeper.direction)",
        )
    if not all(math.isfinite(v) for v in values):
        return Outcome(TrialState.FAIL, reason="nan_loss")
    return Outcome(TrialState.COMPLETE, values=values)


class TrialWorker:
    """Picklable task function: process-based launchers ship it, with the plan, to each worker."""

    def __init__(
        self,
        plan: SweepPlan,
        hydra_context: HydraContext,
        master_config: DictConfig,
        task_function: TaskFunction,
        *,
        composer: TrialComposer | None = None,
        quiet: bool = False,
    ) -> None:
        self.plan = plan
        self.hydra_context = hydra_context
        self.master_config = master_config
        self.task_function = task_function
        if composer is not None:  # the sweep's own, with the compositions its checks made
            self.composer = composer
        self.quiet = quiet  # hydra.sweeper.quiet: no line per trial started or finished, failures aside

    def __call__(self, worker_cfg: DictConfig) -> WorkerSummary:
        from hydra.core.hydra_config import HydraConfig

        summary = WorkerSummary(int(HydraConfig.get().job.num))
        # A launcher's worker process starts and exits as quickly as the command (its sweep waits on it).
        hold_full_collections()
        collect_nothing_at_exit()
        interrupts.install()
        logging.raiseExceptions = False  # a log file on a full disk (or a closed terminal) is no traceback
        self.plan.app.prepare_worker(
            summary.worker, self.master_config, self.plan.n_jobs if self.plan.local_workers else None
        )
        self.plan.app.preload()
        if self.plan.tracking_uri is not None:
            preload_tracking()
        release_after_startup()
        for variable, value in TRACKING_RETRIES.items():  # the user's own settings win
            os.environ.setdefault(variable, value)
        with (
            interrupts.shielded(),
            watching_sweeper(self.plan.sweeper_pid),
            quieted(self.quiet, verbose=self.master_config.hydra.verbose),
        ):
            self.run_trials(self.plan.storage(), this_process(self.plan.launch_id), summary)
        summary.interrupted = interrupts.requested_name()
        return summary

    def run_trials(self, storage: RDBStorage, owner: Owner | None, summary: WorkerSummary) -> None:
        """Claim and run trials until none is left here or elsewhere, too many failed, a signal
        came, or the disk is full (then the stores are as the last whole write left them)."""
        waiting = Waiting()
        study = self.plan.load_study(storage)  # one handle: Optuna caches the finished trials it read
        if failure_rate_exceeded(study.get_trials(deepcopy=False), self.plan.max_failure_rate):
            summary.stopped_for_failures = True
            return
        while interrupts.requested() is None and summary.disk_full is None:
            try:
                if not self.next_trial(storage, study, owner, summary, waiting):
                    return
            except Exception as error:
                if not is_disk_full(error):
                    raise
                summary.disk_full = first_line(error)

    def next_trial(
        self, storage: RDBStorage, study: optuna.Study, owner: Owner | None, summary: WorkerSummary, waiting: Waiting
    ) -> bool:
        """Claim one trial and run it, or wait a moment for trials run elsewhere; False when done
        (or when too many trials failed, as read once this one ended)."""
        fail_stale_trials(study)
        fail_dead_trials(study, storage, self.plan.retry())
        claimed = claim_trial(storage, self.plan.study_name, lambda number: self.plan.for_trial(study, number), owner)
        if claimed is None:
            others = trials_to_wait_for(storage, self.plan.study_name, self.plan.launch_id, self.plan.heartbeats)
            if others:
                waiting.wait(others)
            return bool(others)
        trial, trial_id, trials = claimed
        with heartbeat(storage, trial_id):
            outcome = self.run_trial(trial, trials)
        recorded = self.record(study, storage, trial, trial_id, outcome)
        progress = StudyProgress.read(study)  # the one read of the study once the trial is over
        frozen = next(t for t in progress.trials if t.number == trial.number)
        if recorded:
            summary.trials[trial.number] = outcome.state.name
        else:
            log.info(
                "trial %d was failed by another process while this worker was stopped (paused past the "
                "grace period); its retry runs elsewhere, this result is dropped",
                trial.number,
            )
            outcome = Outcome(TrialState.FAIL, reason=frozen.user_attrs.get(FAILURE_REASON_ATTR, WORKER_DIED))
        self.after_trial(progress, frozen, outcome)
        if outcome.reason == DISK_FULL:
            summary.disk_full = f"trial {trial.number} failed writing to a full disk"
        summary.stopped_for_failures = failure_rate_exceeded(progress.trials, self.plan.max_failure_rate)
        return not summary.stopped_for_failures

    def record(
        self, study: optuna.Study, storage: RDBStorage, trial: optuna.Trial, trial_id: int, outcome: Outcome
    ) -> bool:
        """Tell Optuna how the trial ended, its failure reason first, and queue the retry of an
        interrupted one. False when another process had failed the trial meanwhile."""
        try:
            if outcome.reason:
                trial.set_user_attr(FAILURE_REASON_ATTR, outcome.reason[:2000])
            tell(study, trial, outcome)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        if outcome.reason in (INTERRUPTED, DISK_FULL):
            self.plan.retry()(study, storage.get_trial(trial_id))
        return True

    def run_trial(self, trial: optuna.Trial, trials: list[optuna.trial.FrozenTrial]) -> Outcome:
        """Sample, compose and run one trial (``trials``: the study's, read as it was claimed); any
        failure on the way is the trial's, never the worker's."""
        try:
            values = self.plan.space.sample(trial)
            overrides = [*self.plan.base_overrides, *self.plan.space.overrides(values)]
            config = self.composer.compose(overrides)
        except Exception as error:  # a sampler that fails, a combination Hydra cannot compose
            return Outcome(TrialState.FAIL, reason=f"{type(error).__name__}: {error}")
        if interrupts.requested() is not None:  # claimed, but not started
            return Outcome(TrialState.FAIL, reason=INTERRUPTED)
        sampled = self.plan.space.overrides(values)[len(self.plan.space.fixed) :]
        begun = sum(1 for t in trials if t.state is not TrialState.WAITING)
        log.log(
            detail_level(self.quiet),
            "trial %d started (%d/%d): %s",
            trial.number,
            begun,
            len(trials),
            " ".join(sampled) or "-",
        )
        if self.plan.app.makes_trial_runs and self.plan.tracking_uri:
            self.start_trial_run(trial, values)
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{trial.number}"
            config.hydra.job.num = trial.number
            config.hydra.sweeper.study_name = self.plan.study_name
            config.hydra.sweeper.storage = self.plan.storage_url
            if self.plan.app.makes_trial_runs:  # absolute, as the sweep resolved it
                config.hydra.sweeper.tracking_uri = self.plan.tracking_uri
            # Composed in the worker, whose folder hydra.job.chdir=true made its cwd: the trial's
            # relative paths still mean the folder the sweep was started from.
            config.hydra.runtime.cwd = self.master_config.hydra.runtime.cwd
        try:
            job = run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        except KeyboardInterrupt:  # raised while training (the run is closed as KILLED)
            return Outcome(TrialState.FAIL, reason=INTERRUPTED)
        return outcome_of(job, len(self.plan.directions))

    def start_trial_run(self, trial: optuna.Trial, values: dict) -> None:
        """For an app that does not track its own runs: the trial's MLflow run, RUNNING, with its
        params, under the study's parent run; the task reaches it through ``current_trial()``.
        A tracking server that is down costs the run, not the trial."""
        from vae_sweep.sweep.trial_runs import start_trial_run
        from vae_sweep.track.run import TRACKING_ERRORS

        try:
            run_id = start_trial_run(self.mlflow_client, self.plan, trial.number, values)
        except (ConfigError, *TRACKING_ERRORS) as error:
            log.warning("could not start trial %d's MLflow run: %s", trial.number, error)
            return
        trial.set_user_attr(RUN_ID_ATTR, run_id)

    @functools.cached_property
    def composer(self) -> TrialComposer:
        """One composition per set of group choices, cached for the worker's later trials."""
        return TrialComposer(self.hydra_context.config_loader, self.master_config)

    @functools.cached_property
    def mlflow_client(self):  # -> MlflowClient, imported lazily
        """One client (and one server check) per worker process, not one per trial."""
        from vae_sweep.sweep.parent_run import tracking_client

        return tracking_client(self.plan.tracking_uri)

    def after_trial(self, progress: StudyProgress, frozen: optuna.trial.FrozenTrial, outcome: Outcome) -> None:
        """One progress line (the trial's own duration, the study's progress and ETA), a warning
        for a failure but an interrupted one; the trial's state and the best so far onto MLflow."""
        number = frozen.number
        value = ", ".join(f"{v:.4f}" for v in outcome.values) if outcome.values else outcome.reason or "-"
        took = format_duration(duration_s(frozen) or 0.0)
        status = progress_line(progress.trials, also_working=1)  # this worker goes on too
        failed = outcome.state is TrialState.FAIL and outcome.reason != INTERRUPTED
        level = logging.WARNING if failed else detail_level(self.quiet)
        best = progress.best_line()
        log.log(level, "trial %d %s in %s: %s | best %s | %s", number, outcome.state.name, took, value, best, status)
        if self.plan.tracking_uri is None:
            return
        from vae_sweep.track.run import TRACKING_ERRORS

        try:
            self.record_in_mlflow(frozen, outcome, progress)
        except (ConfigError, *TRACKING_ERRORS) as error:  # the trial itself is safe in Optuna
            log.warning("could not record trial %d's state and the study's progress in MLflow: %s", number, error)

    def record_in_mlflow(self, frozen: optuna.trial.FrozenTrial, outcome: Outcome, progress: StudyProgress) -> None:
        """The trial's state (and failure reason) as tags of its run, which a failed trial's run
        must not be left open with; the study's progress on the parent run."""
        from mlflow.entities import RunTag

        from vae_sweep.sweep.parent_run import record_progress
        from vae_sweep.sweep.trial_runs import finish_trial_run

        client = self.mlflow_client
        run_id = frozen.user_attrs.get(RUN_ID_ATTR)
        if run_id and self.plan.app.makes_trial_runs:
            finish_trial_run(client, run_id, frozen, outcome.reason)
        elif run_id and not continued_elsewhere(progress.trials, frozen):
            tags = [RunTag(TRIAL_STATE_TAG, frozen.state.name)]
            if outcome.reason:
                tags.append(RunTag(FAILURE_REASON_ATTR, outcome.reason[:5000]))
            client.log_batch(run_id, tags=tags)
            if frozen.state is TrialState.FAIL and client.get_run(run_id).info.status in ("RUNNING", "FINISHED"):
                client.set_terminated(run_id, "KILLED" if outcome.reason == INTERRUPTED else "FAILED")
        if self.plan.parent_run_id:
            record_progress(client, self.plan.parent_run_id, progress)


def continued_elsewhere(trials: Sequence[optuna.trial.FrozenTrial], frozen: optuna.trial.FrozenTrial) -> bool:
    """Whether another trial of ``trials`` (a retry resumed from a checkpoint) has taken over this trial's run."""
    run_id = frozen.user_attrs.get(RUN_ID_ATTR)
    states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
    return any(
        t.number != frozen.number and t.state in states and t.user_attrs.get(RUN_ID_ATTR) == run_id for t in trials
    )


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    try:
        study.tell(trial, values=outcome.values, state=outcome.state)
    except RuntimeError as error:
        # GridSampler calls study.stop() once its grid is exhausted, which only works inside
        # study.optimize(); the trial itself is already stored as finished.
        if "Study.stop" not in str(error):
            raise


def failure_rate_exceeded(trials: Sequence[optuna.trial.FrozenTrial], max_rate: float) -> bool:
    finished = [t for t in trials if t.state.is_finished()]
    if len(finished) < MIN_TRIALS_FOR_FAILURE_RATE:
        return False
    failed = sum(1 for t in finished if t.state is TrialState.FAIL)
    return failed / len(finished) > max_rate


def preload_tracking() -> None:
    """MLflow imported (seconds) before the first trial, whose duration then measures the trial."""
    import vae_sweep.track.run  # noqa: F401

    # MLflow logs every failed database call with its traceback, then raises; the run's one
    # warning (vae_sweep.track.run) already says what failed and what was lost.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def trials_to_wait_for(
    storage: RDBStorage, study_name: str, launch: str, heartbeats: bool
) -> list[tuple[int, Owner | None]]:
    """RUNNING trials this worker must not leave behind: those of other processes, whose end
    (or death: heartbeat, dead owner) may yet queue a retry. Trials of workers of the same sweep
    command are left to them; without heartbeats, a trial on another machine cannot be watched."""
    study_id = storage.get_study_id_from_name(study_name)
    pending = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        owner = owner_of(trial)
        if owner is not None and owner.launch == launch and not is_gone(owner):
            continue
        if not heartbeats and (owner is None or owner.host != host_identity()):
            continue
        pending.append((trial.number, owner))
    return pending


class Waiting:
    """A worker with nothing to claim: one line now and every WAIT_LOG_S, then a short sleep."""

    def __init__(self) -> None:
        self.last_log = -math.inf

    def wait(self, trials: list[tuple[int, Owner | None]]) -> None:
        if time.monotonic() - self.last_log >= WAIT_LOG_S:
            self.last_log = time.monotonic()
            where = ", ".join(f"{n} ({owner.describe() if owner else 'owner unknown'})" for n, owner in trials)
            log.info(
                "no trial left to claim; waiting for %d running in other processes: %s "
                "(a dead one is failed and retried once its heartbeat stops)",
                len(trials),
                where,
            )
        time.sleep(WAIT_POLL_S)


@contextlib.contextmanager
def watching_sweeper(sweeper_pid: int) -> Iterator[None]:
    """In a worker process started by the sweep's own process (joblib), stop as for SIGTERM if
    that process disappears: a killed sweep must not leave workers claiming trials on their own."""
    if not sweeper_pid or os.getpid() == sweeper_pid or os.getppid() != sweeper_pid:
        yield
        return

    def check() -> bool:
        if os.getppid() == sweeper_pid:
            return False
        log.warning("the sweep's process %d is gone: stopping this worker", sweeper_pid)
        os.kill(os.getpid(), signal.SIGTERM)
        return True

    with repeating(1.0, check, "watch-sweeper"):
        yield
