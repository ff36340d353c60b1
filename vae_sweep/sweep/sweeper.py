"""The sweep itself: validate everything, open the study, run workers, report.

Order matters: every check that can fail (search space, sampler, pruner, storage, tracking
server, the config of every choice and bound in the space, that the stores and the output
folder can be written) runs before the first trial, and all but the storage's before anything
is written to a store. What is particular to the app swept (vae-train or any other) is in
``apps``. A rerun of a study that is done is answered from the study alone, after the checks
that need nothing composed or opened (``request``, ``finished``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import signal
import uuid
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from vae_sweep import interrupts
from vae_sweep.errors import ConfigError, DiskFull, SweepFailed, SweepInterrupted, is_disk_full, require
from vae_sweep.garbage import release_after_startup
from vae_sweep.local_stores import absolute_sqlite_url, check_local_store, sqlite_file
from vae_sweep.suggestions import unknown_name_line
from vae_sweep.sweep.apps import App, Tracking, app_for
from vae_sweep.sweep.background import repeating
from vae_sweep.sweep.compose import TrialComposer
from vae_sweep.sweep.finished import REPORT_ATTR, done_message, report_record
from vae_sweep.sweep.launchers import (
    JOB_LISTING_LOGGERS,
    check_launcher,
    launcher_name,
    launches_locally,
    set_launcher_jobs,
    worker_count,
)
from vae_sweep.sweep.locks import study_lock
from vae_sweep.sweep.owners import child_pids
from vae_sweep.sweep.plan import SweepPlan
from vae_sweep.sweep.plots import save_plots
from vae_sweep.sweep.plots_ahead import PlotsAhead
from vae_sweep.sweep.preflight import check_output_folder, prepare_tracking_store
from vae_sweep.sweep.progress import STATUS_INTERVAL_S, progress_line
from vae_sweep.sweep.replicates import record_command
from vae_sweep.sweep.request import SweepRequest, plot_names, read_request
from vae_sweep.sweep.results import summarize, write_results
from vae_sweep.sweep.study import (
    check_space_fits,
    ensure_budget,
    fail_dead_trials,
    fail_stale_trials,
    open_study,
    owner_of,
    storage_backend,
)
from vae_sweep.sweep.verbosity import detail_level, lowered, quieted
from vae_sweep.sweep.worker import TrialWorker, WorkerSummary, first_line
from vae_sweep.track.store_ahead import StoreAhead
from vae_sweep.track.urls import masked, page_to_open

log = logging.getLogger(__name__)
WORKER_OVERRIDES = ("hydra.sweep.subdir=workers/${hydra.job.num}", "hydra.output_subdir=null")


class OptunaSweeperImpl:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = OmegaConf.create(dict(settings))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config
        self.app: App = app_for(task_function)

    @property
    def quiet(self) -> bool:
        return bool(self.settings.get("quiet", False))

    def sweep(self, arguments: list[str]) -> list[WorkerSummary]:
        interrupts.install()
        logging.raiseExceptions = False  # a log file on a full disk (or a closed terminal) is no traceback
        with quieted(self.quiet, verbose=self.config.hydra.verbose):
            return self.run_sweep(arguments)

    def run_sweep(self, arguments: list[str]) -> list[WorkerSummary]:
        request = self.validate(arguments)
        done = done_message(request.storage_url, request.study_name, request.key, request.n_trials)
        if done is not None:  # before composing a trial's config, opening MLflow or making a sweep folder
            print(done)
            return []
        # A new MLflow store's migrations, and the plots' imports, run on another core meanwhile.
        ahead = StoreAhead.start(self.app.tracking_uri(self.config))
        with PlotsAhead.started(plot_names(self.settings), request.n_trials) as plots_ahead:
            try:
                plan, study, created = self.prepare(request, ahead)
            except KeyboardInterrupt:  # the study is whole whenever this lands: the next run completes it
                raise SweepInterrupted(
                    "Interrupted: run the same command again to set the study up and start it"
                ) from None
            finally:
                if ahead is not None:
                    ahead.cancel()
            release_after_startup()  # the study is set up; vae-train's start held full collections
            return self.run_study(plan, study, created, request.key, plots_ahead)

    def run_study(
        self, plan: SweepPlan, study: optuna.Study, created: bool, request: str, plots_ahead: PlotsAhead | None
    ) -> list[WorkerSummary]:
        """The prepared study's trials run by the workers, then its report."""
        # In place of the launcher's job listing, whose "#0" is a worker running many trials.
        log.info(
            "Study %r%s in %s: %d trials, %d at a time through the %s launcher, output in %s",
            plan.study_name,
            "" if created else " (resumed)",
            masked(plan.storage_url),
            len(study.trials),
            plan.n_jobs,
            launcher_name(self.config),
            self.config.hydra.sweep.dir,
        )
        if plots_ahead is not None:
            plots_ahead.open(plan.storage_url, plan.study_name)
        with interrupts.shielded():
            try:
                summaries = self.run_workers(plan)
                stopped_by = interrupts.requested_name() or next(
                    (s.interrupted for s in summaries if s.interrupted), None
                )
                if stopped_by:
                    raise self.interrupted(plan, stopped_by)
                full = next((s.disk_full for s in summaries if s.disk_full), None)
                if full:
                    raise self.disk_full(plan, full)
                self.report(plan, summaries, request, plots_ahead)
            except OSError as error:  # writing the results or plots
                if not is_disk_full(error):
                    raise
                raise self.disk_full(plan, first_line(error)) from None
        return summaries

    def disk_full(self, plan: SweepPlan, detail: str) -> SweepFailed:
        """One line that names the full disk and how to go on: the stores are whole (every write
        is a transaction), and the same command, once there is space, retries what was cut off."""
        folders = [Path.cwd(), Path(str(self.config.hydra.sweep.dir))]
        folders += [path.parent for path in map(sqlite_file, (plan.storage_url, plan.tracking_uri or "")) if path]
        existing = [folder for folder in folders if folder.exists()]
        fullest = min(existing, key=lambda folder: shutil.disk_usage(folder).free)
        return SweepFailed(
            f"{DiskFull(str(fullest.resolve()), detail)}; free some space, then run the same command again: "
            f"study {plan.study_name!r} resumes, and the trials cut off are retried"
        )

    def run_workers(self, plan: SweepPlan) -> list[WorkerSummary]:
        """Launch the workers, and again while trials are left that workers which died (a worker
        process killed by the OOM killer ends the whole joblib pool) did not finish: each launch
        must make progress, else the sweep stops with one line. Signals reach every local
        worker: a terminal's Ctrl-C reaches them itself, a SIGTERM to this process is passed on."""
        summaries: list[WorkerSummary] = []
        storage = plan.storage()
        n_workers = plan.n_jobs
        while True:
            before = finished_count(plan.load_study(storage))
            error = None
            try:
                with (
                    interrupts.listening(forward_to_children),
                    interrupts.left_to_children(signal.SIGHUP),
                    repeating(STATUS_INTERVAL_S, lambda: log_status(plan, storage), "sweep-status"),
                ):
                    jobs = self.launch(plan, n_workers, first_job=len(summaries))
            except Exception as launch_error:  # joblib's TerminatedWorkerError, a launcher's own failure
                error = launch_error
                jobs = []
            for job in jobs:
                if job.status is JobStatus.COMPLETED:
                    summaries.append(job.return_value)
                else:
                    error = job._return_value  # .return_value would re-raise it
            if interrupts.requested() is not None or any(s.interrupted for s in summaries):
                return summaries
            study = plan.load_study(storage)
            fail_stale_trials(study)
            died = fail_dead_trials(study, storage, plan.retry())
            if error is not None:
                log.warning(
                    "a worker ended unexpectedly (%s)%s",
                    first_line(error),
                    f"; trial(s) {', '.join(map(str, died))} failed as worker_died and retried" if died else "",
                )
            if any(s.stopped_for_failures or s.disk_full for s in summaries):
                return summaries
            left = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            if not left:
                return summaries
            if error is not None and finished_count(study) == before and not died:
                raise SweepFailed(f"workers failed without finishing any trial ({first_line(error)}); {left} left")
            n_workers = min(plan.n_jobs, left)
            log.info("starting %d worker(s) again for the %d trial(s) left", n_workers, left)

    def launch(self, plan: SweepPlan, n_workers: int, *, first_job: int) -> Sequence[JobReturn]:
        set_launcher_jobs(self.config, n_workers)
        worker = TrialWorker(
            plan, self.hydra_context, self.config, self.task_function, composer=self.composer, quiet=self.quiet
        )
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=worker, config=self.config
        )
        with lowered(JOB_LISTING_LOGGERS, verbose=self.config.hydra.verbose):
            return launcher.launch([[*plan.base_overrides, *WORKER_OVERRIDES]] * n_workers, initial_job_idx=first_job)

    def validate(self, arguments: list[str]) -> SweepRequest:
        """The sweep asked for, its settings checked: everything that needs no config composed
        and no store opened."""
        return read_request(
            self.settings,
            arguments,
            study_name=self.study_name(),
            searchpath=tuple(self.config.hydra.get("searchpath") or ()),
        )

    def prepare(self, request: SweepRequest, ahead: StoreAhead | None) -> tuple[SweepPlan, optuna.Study, bool]:
        settings, space, directions = self.settings, request.space, request.directions
        for key in ("min_active_units", "collapse_patience"):
            require(
                settings[key] is None or not self.app.makes_trial_runs,
                f"hydra.sweeper.{key}",
                "only vae-train's trials measure active latent units; this app's do not",
            )
        # As the launch will set it (fewer only when fewer trials are left), so that the workers
        # reuse the compositions of these checks.
        set_launcher_jobs(self.config, settings.n_jobs)
        checked = self.app.check(self.task_config, list(request.fixed), space, len(directions), self.config.hydra)
        tracking = checked.tracking
        sampler_name, sampler_seed, sampler_options = request.sampler
        pruner_name, pruner_options = request.pruner
        plan = SweepPlan(
            study_name=request.study_name,
            storage_url=request.storage_url,
            directions=directions,
            space=space,
            base_overrides=request.fixed,
            searchpath=request.searchpath,
            sampler_name=sampler_name,
            sampler_seed=sampler_seed,
            sampler_options=sampler_options,
            pruner_name=pruner_name,
            pruner_options=pruner_options,
            n_jobs=settings.n_jobs,
            local_workers=launches_locally(self.config.hydra.launcher),
            max_failure_rate=settings.max_failure_rate,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            max_retry=settings.max_retry,
            parent_run_id=None,
            # Workers in job folders (hydra.job.chdir=true) open this very store too.
            tracking_uri=absolute_sqlite_url(tracking.uri, Path.cwd()) if tracking else None,
            launch_id=uuid.uuid4().hex,
            sweeper_pid=os.getpid(),
            app=self.app,
        )
        check_launcher(self.config.hydra.launcher, plan.n_jobs)
        # Unwritable, damaged or foreign stores, an unwritable output folder: one message now, not
        # a traceback once the study and its parent run exist (or from inside the launcher).
        storage_backend(plan.storage_url)
        check_local_store(plan.storage_url, key="hydra.sweeper.storage", store="Optuna storage", marker="studies")
        if tracking is not None:
            check_local_store(tracking.uri, key=tracking.key, store="MLflow store", marker="experiments")
        check_output_folder(Path(str(self.config.hydra.sweep.dir)))
        sampler, pruner = plan.sampler(), plan.pruner()  # their mistakes are refused before the storage exists
        if tracking is not None:  # outside the lock: it takes seconds, and is atomic on its own
            prepare_tracking_store(tracking.uri, tracking.experiment, key=tracking.key, ahead=ahead)
        storage = plan.storage()
        with study_lock(storage, plan.study_name):  # one process at a time sets a study up, a kill anywhere is safe
            study, created = open_study(plan.study_name, storage, directions, sampler, pruner)
            check_space_fits(study, space)
            record_command(study, request.arguments, self.config.hydra.overrides.hydra)
            if checked.metric_names and study.metric_names != list(checked.metric_names):
                with warnings.catch_warnings():  # "experimental" since Optuna 3.2, unchanged since
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.set_metric_names(list(checked.metric_names))  # Optuna's plots and dashboard say val_loss
            fail_stale_trials(study)
            died = fail_dead_trials(study, storage, plan.retry())
            if died:
                log.info(
                    "Trial(s) %s had lost their worker: failed as worker_died and retried", ", ".join(map(str, died))
                )
            added = ensure_budget(study, request.n_trials)
            if added:
                log.log(detail_level(self.quiet), "Added %d trials to the budget of study %r", added, plan.study_name)
            if tracking is not None:
                plan = dataclasses.replace(plan, parent_run_id=self.open_tracking(tracking, study, plan))
        left = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        n_workers = worker_count(plan.n_jobs, left, local=plan.local_workers, cores=len(os.sched_getaffinity(0)))
        return dataclasses.replace(plan, n_jobs=n_workers), study, created

    def open_tracking(self, tracking: Tracking, study: optuna.Study, plan: SweepPlan) -> str:
        """The study's parent run (call it under the study lock), and runs of dead workers closed."""
        from vae_sweep.sweep.parent_run import close_stale_runs, open_parent_run, tracking_client

        parent = open_parent_run(tracking.uri, tracking.experiment, study, plan)
        closed = close_stale_runs(tracking_client(tracking.uri), study, parent)
        if closed:
            log.log(detail_level(self.quiet), "Closed %d MLflow runs whose trial had ended without them", closed)
        return parent

    def study_name(self) -> str:
        name = self.settings.study_name or self.app.default_study_name(self.config.hydra)
        if self.settings.fresh:
            name = f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
        return name

    @functools.cached_property
    def composer(self) -> TrialComposer:
        return TrialComposer(self.hydra_context.config_loader, self.config)

    def task_config(self, overrides: Sequence[str]) -> DictConfig:
        """The config a trial with ``overrides`` gets, without its ``hydra`` node; Hydra's own
        message (a misspelt key or option with its close match), in one line, when it cannot be
        composed. Composed as the workers compose trials: once per combination of choices."""
        try:
            config = self.composer.compose(list(overrides))
        except Exception as error:  # Hydra's own messages name the override and the allowed options
            raise ConfigError("", f"{' '.join(overrides)}: {unknown_name_line(error) or error}") from None
        with open_dict(config):
            del config["hydra"]
        return config

    def interrupted(self, plan: SweepPlan, signal_name: str) -> SweepInterrupted:
        """Ctrl-C, SIGTERM, SIGHUP: the workers failed their trials as interrupted and queued
        their retries; the study's parent run is KILLED (a rerun reopens it), and the user is told
        in one line how to go on."""
        if plan.tracking_uri and plan.parent_run_id:
            from vae_sweep.sweep.parent_run import close_stale_runs, tracking_client
            from vae_sweep.track.run import TRACKING_ERRORS

            try:
                client = tracking_client(plan.tracking_uri)
                close_stale_runs(client, plan.load_study(plan.storage()), plan.parent_run_id)
                client.set_terminated(plan.parent_run_id, "KILLED")
            except (ConfigError, *TRACKING_ERRORS) as error:
                log.warning("could not mark the study's MLflow run %s KILLED: %s", plan.parent_run_id, error)
        return SweepInterrupted(
            f"Interrupted ({signal_name}): run the same command again to resume study {plan.study_name!r}"
        )

    def report(
        self, plan: SweepPlan, summaries: list[WorkerSummary], request: str, plots_ahead: PlotsAhead | None
    ) -> None:
        """The sweep's end: results and plots written, the parent run finished, and what happened
        and where to look in a few lines, which a complete report also leaves in the study for a
        rerun of the same ``request`` (``finished``)."""
        storage = plan.storage()
        study = plan.load_study(storage)
        summary = summarize(study, plan)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        results = write_results(summary, sweep_dir)
        plots = plots_ahead.draw(sweep_dir / "plots") if plots_ahead else None
        if plots is None:
            plots = save_plots(study, sweep_dir / "plots", plot_names(self.settings))
        experiment = None  # the MLflow experiment's id, for the address of its page
        if plan.tracking_uri and plan.parent_run_id:
            from vae_sweep.sweep.parent_run import close_stale_runs, finish_parent_run, tracking_client
            from vae_sweep.track.run import TRACKING_ERRORS

            try:
                client = tracking_client(plan.tracking_uri)
                close_stale_runs(client, study, plan.parent_run_id)
                finish_parent_run(client, plan.parent_run_id, study, plots, results)
                experiment = client.get_run(plan.parent_run_id).info.experiment_id
            except (ConfigError, *TRACKING_ERRORS) as error:  # the study and its results file are safe
                log.warning(
                    "could not put the results and plots onto the study's MLflow run %s (%s); they are in %s",
                    plan.parent_run_id,
                    error,
                    results.parent,
                )
        counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
        lines = []
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running:
            where = ", ".join(
                f"{t.number} ({o.describe() if (o := owner_of(t)) else 'owner unknown'})" for t in running
            )
            lines.append(
                f"Not done: trial(s) {where} still run in other processes; run the same command again "
                "once they end to finish the study (one that died is then failed and retried)"
            )
        if "best_value" in summary:
            lines.append(
                f"Best value {summary['best_value']:.4f} (trial {summary['best_trial']}): {summary['best_params']}"
            )
            lines.append(f"Reproduce: {summary['reproduce']}")
        if summary.get("feasible") == 0:
            lines.append(
                f"No feasible trial: every complete trial has fewer than hydra.sweeper.min_active_units="
                f"{self.settings.min_active_units} active latent units (posterior collapse); train longer, "
                "lower regularization.beta or add free bits"
            )
        lines.append(f"Results:   {results.resolve()}")
        if plan.tracking_uri:  # without the experiment's id (the store failed at the end): the store itself
            where = page_to_open(plan.tracking_uri, experiment) if experiment else masked(plan.tracking_uri)
            lines.append(f"MLflow:    {where}  (parent run {plan.parent_run_id})")
        lines.append(f"Optuna:    optuna-dashboard {masked(plan.storage_url)}")
        print(f"Study {plan.study_name!r}: {sum(summary['trials'].values())} trials ({counts})", *lines, sep="\n")
        if any(s.stopped_for_failures for s in summaries):
            raise SweepFailed(
                f"more than {plan.max_failure_rate:.0%} of the trials failed ({counts}); stopped early. "
                "Raise hydra.sweeper.max_failure_rate to go on"
            )
        finished = sum(n for state, n in summary["trials"].items() if state in ("COMPLETE", "PRUNED", "FAIL"))
        if finished and summary["trials"].get("FAIL", 0) == finished:
            raise SweepFailed(f"all {finished} trials of study {plan.study_name!r} failed; see failure_reason")
        if experiment is not None or not plan.tracking_uri:  # else a rerun's full path closes the runs left open
            study.set_user_attr(REPORT_ATTR, report_record(request, len(study.trials), lines))


def log_status(plan: SweepPlan, storage: RDBStorage) -> None:
    """The study's progress while the workers run, whatever the launcher does with their output."""
    log.info("study %r: %s", plan.study_name, progress_line(plan.load_study(storage).get_trials(deepcopy=False)))


def forward_to_children(signum: int) -> None:
    """Pass a signal on to this process's children (joblib's workers; its resource tracker ignores it)."""
    for pid in child_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def finished_count(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
