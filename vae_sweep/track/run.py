"""MLflow: one run per training, with params, technique tags, per-epoch metrics and artifacts.

Everything goes through ``MlflowClient`` with explicit run ids and ``log_batch`` (metrics
batched, see ``MlflowRun.flush``), so runs can be created in any process and linked to a parent
run by the ``mlflow.parentRunId`` tag; files go to the run's artifact repository, opened from
the URI its creation returned.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests
import torch
from mlflow.entities import DatasetInput, Experiment, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

from vae_sweep.errors import ConfigError
from vae_sweep.local_stores import check_local_store
from vae_sweep.names import (
    CONFIG_ARTIFACT,
    EPOCH_IMAGES_KEY,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    FAILURE_DETAIL_TAG,
    FAILURE_REASON_ATTR,
    FINAL_METRICS,
    NOTE_TAG,
    POSTERIOR_COLLAPSE_TAG,
    PRUNED_AT_TAG,
    TRIAL_NUMBER_TAG,
    WEIGHTS_ARTIFACT,
    epoch_key,
)
from vae_sweep.track.datasets import dataset_input
from vae_sweep.track.history import metric_history
from vae_sweep.track.images import epoch_image_due, image_grid, write_png
from vae_sweep.track.logged_config import config_yaml, flatten, without_passwords
from vae_sweep.track.logged_model import ModelUpload
from vae_sweep.track.stores import check_reachable, prepare_mlflow_store
from vae_sweep.track.tags import environment_tags, model_label, technique_tags
from vae_sweep.track.urls import masked
from vae_sweep.train.config import MlflowTracking, RunConfig
from vae_sweep.train.data import DataSplits
from vae_sweep.train.loop import TrainResult, reconstruct
from vae_sweep.train.models import VAEModule
from vae_sweep.train.specs import target_of

log = logging.getLogger(__name__)
# What a store that cannot be reached raises: MLflow's own errors, HTTP errors after MLflow's
# retries, and OS errors from a local store (disk full, folder gone).
TRACKING_ERRORS = (MlflowException, requests.exceptions.RequestException, OSError)
TRACKING, ARTIFACTS = "tracking store", "artifact store"  # fail apart: an artifact folder is not the database
PARAMS_PER_BATCH = 100  # MLflow's limits for one log_batch call
METRICS_PER_BATCH = 1000
# Intra-op threads change float summation order: reproduce re-runs with the same count.
THREADS_TAG = "runtime.torch_threads"
DEVICE_TAG = "runtime.device"
IMAGE_EVERY = 5  # a single run's epoch pictures, when tracking.image_every is null


@functools.lru_cache(maxsize=4)
def open_store_once(uri: str) -> None:
    """A local store checked (an unwritable folder, a damaged or foreign file is one message) or
    made whole, once per process: a sweep worker starts many runs in the same store."""
    check_local_store(uri, key="tracking.uri", store="MLflow store", marker="experiments")
    prepare_mlflow_store(uri)


@functools.lru_cache(maxsize=4)
def client_for(uri: str) -> MlflowClient:
    """One client per store and process: a sweep worker logs many runs to the same store."""
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    """Get or create the experiment, marked for MLflow's model-training view; another process may
    create it at the same moment. One that was deleted (in the MLflow UI) is not brought back
    behind the user's back: they are told how."""
    found = find_experiment(client, name)
    if found.tags.get(EXPERIMENT_KIND_TAG) is None:  # made by us before the tag, or by someone else
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return found.experiment_id


def find_experiment(client: MlflowClient, name: str) -> Experiment:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        raise ConfigError(
            "tracking.experiment",
            f"experiment {name!r} was deleted in MLflow; restore it (MLFLOW_TRACKING_URI={masked(client.tracking_uri)} "
            f"mlflow experiments restore --experiment-id {experiment.experiment_id}) or log to another one "
            "with tracking.experiment=NAME",
        )
    if experiment is not None:
        return experiment
    try:
        return client.get_experiment(client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}))
    except MlflowException:
        experiment = client.get_experiment_by_name(name)  # made by another process meanwhile
        if experiment is None:
            raise
        return experiment


class MlflowRun:
    """An open MLflow run that receives epoch metrics as a training callback.

    A store that fails mid-run (a tracking server going down) never stops the training: the
    first failed call is logged as a warning, later calls are put off rather than each waiting
    out MLflow's retries, and everything put off is tried once more when the run ends. What
    still could not be logged then is named in one warning. The tracking store (params, metrics,
    tags, the run's status) and the artifact store (files) fail apart: an artifact folder that
    cannot be written costs the files, never the metrics or the run's end.

    ``config`` (the run's) names its data set, its last epoch and its picture count; a sweep's
    trial (``sweep_trial``) logs no MLflow model nor epoch pictures unless its tracking config
    asks for them.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        spec: MlflowTracking,
        *,
        config: RunConfig | None = None,
        sweep_trial: bool = False,
        experiment_id: str | None = None,
        artifact_uri: str | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.artifact_uri = artifact_uri  # as the run's creation returned it; looked up if not known
        self.spec = spec
        self.config = config
        self.experiment_id = experiment_id
        # Unset (null), what the run can afford: a sweep's trials skip both (see MlflowTracking).
        self.mlflow_model = spec.mlflow_model if spec.mlflow_model is not None else not sweep_trial
        self.image_every = spec.image_every if spec.image_every is not None else 0 if sweep_trial else IMAGE_EVERY
        self.dataset: tuple[str, str] | None = None  # (name, digest) of the run's data set input
        self.unsent_inputs: list[DatasetInput] = []  # the data set input, sent with the first metrics
        self.pictured: tuple[VAEModule, torch.Tensor, tuple[int, int, int]] | None = None  # model, inputs, shape
        self.pending: list[Metric] = []  # epoch metrics not sent yet
        self.last_flush = time.monotonic()
        self.failures: dict[str, str] = {}  # store (TRACKING, ARTIFACTS) -> its error while it fails
        self.warned = False
        self.deferred: list[tuple[str, str | tuple[str, ...], Callable[[], object]]] = []  # (what, store, call)
        self.logged_through = 0  # a resumed run: epochs up to here are in the store already

    @classmethod
    def start(
        cls,
        spec: MlflowTracking,
        config: RunConfig,
        resolved: Mapping[str, Any],
        *,
        tags: Mapping[str, str] | None = None,
        sweep_trial: bool = False,
    ) -> MlflowRun:
        """Create the run with the full resolved config as params; ``tags`` may hold
        ``mlflow.parentRunId``; ``sweep_trial``: a job of a multirun (see the class)."""
        check_reachable(spec.uri)
        open_store_once(spec.uri)
        client = client_for(spec.uri)
        threads = config.trainer.num_threads or torch.get_num_threads()
        device = str(config.trainer.resolve_device())  # cuda:1: the GPU a sweep worker was given
        runtime = {THREADS_TAG: str(threads), DEVICE_TAG: device}
        all_tags = {**environment_tags(), **technique_tags(config), **runtime, **(tags or {})}
        shape = model_label(config.model)
        run_name = spec.run_name or f"{config.optimizer.name}-{shape}-{config.scheduler.name}"
        if TRIAL_NUMBER_TAG in all_tags:  # sweeps: names stay unique and sort by trial in the UI
            run_name = f"trial-{int(all_tags['optuna.trial_number']):03d}-{run_name}"
        experiment = experiment_id(client, spec.experiment)
        run = client.create_run(
            experiment,
            run_name=run_name,
            tags=all_tags,
        )
        this = cls(
            client,
            run.info.run_id,
            spec,
            config=config,
            sweep_trial=sweep_trial,
            experiment_id=experiment,
            artifact_uri=run.info.artifact_uri,
        )
        params = [Param(key, value) for key, value in flatten(without_passwords(resolved)).items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            batch = params[start : start + PARAMS_PER_BATCH]
            this.send("params", functools.partial(client.log_batch, this.run_id, params=batch))
        upload = functools.partial(this.upload_text, config_yaml(resolved), CONFIG_ARTIFACT)
        this.send(CONFIG_ARTIFACT, upload, ARTIFACTS)
        return this

    @classmethod
    def resume(
        cls,
        spec: MlflowTracking,
        run_id: str,
        *,
        tags: Mapping[str, str] | None = None,
        config: RunConfig | None = None,
    ) -> MlflowRun:
        """Reopen a run whose trial's worker died, for its retry to go on from a checkpoint:
        RUNNING again, the failure tags of the dead attempt removed, the retry's own tags set.
        Its params and config.yaml are the ones it has."""
        check_reachable(spec.uri)
        client = client_for(spec.uri)
        run = client.get_run(run_id)
        client.update_run(run_id, status="RUNNING")
        for key in (FAILURE_REASON_ATTR, FAILURE_DETAIL_TAG):
            if key in run.data.tags:
                client.delete_tag(run_id, key)
        if tags:
            client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
        this = cls(
            client,
            run_id,
            spec,
            config=config,
            sweep_trial=True,
            experiment_id=run.info.experiment_id,
            artifact_uri=run.info.artifact_uri,
        )
        history = metric_history(client, run_id, "train_loss")
        this.logged_through = max((m.step for m in history), default=0)
        return this

    @functools.cached_property
    def artifacts(self) -> ArtifactRepository:
        """The run's artifact store, as MLflow's client opens it, but from the URI the run's
        creation returned: the client looks the run up again (all its params, tags and metrics)
        before its first upload of each run, about 5 ms on SQLite. A lookup that fails is tried
        again at the next upload (a cached property keeps only a result)."""
        uri = self.artifact_uri or self.client.get_run(self.run_id).info.artifact_uri
        tracking_uri = self.client.tracking_uri
        return get_artifact_repository(add_databricks_profile_info_to_artifact_uri(uri, tracking_uri), tracking_uri)

    def upload(self, path: Path, folder: str | None = None) -> None:
        self.artifacts.log_artifact(str(path), folder)

    def upload_text(self, text: str, name: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8")
            self.upload(path)

    def send(
        self, what: str, call: Callable[[], object], store: str | tuple[str, ...] = TRACKING, *, defer: bool = True
    ) -> bool:
        """Make one MLflow call to ``store``; if it fails, warn (once per run) and put the call
        off, with the later calls to the same store. A call to both stores (a picture, whose
        upload also tags the run; the MLflow model) waits while either fails, and a failure of
        its own is put down to the first one named."""
        stores = (store,) if isinstance(store, str) else store
        if not any(name in self.failures for name in stores):
            try:
                call()
                return True
            except TRACKING_ERRORS as error:
                self.failures[stores[0]] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                if not self.warned:  # once per run; at the end one more sums up what was lost
                    self.warned = True
                    where = "store" if stores[0] == TRACKING else "artifact store of"
                    log.warning(
                        "MLflow %s %s failed while logging %s of run %s (%s); training goes on, "
                        "logging is tried again when the run ends",
                        where,
                        masked(self.spec.uri),
                        what,
                        self.run_id,
                        self.failures[stores[0]],
                    )
        if defer:
            self.deferred.append((what, store, call))
        return False

    def on_train_start(self, model: VAEModule, data: DataSplits) -> None:
        """The data set becomes the run's input (sent with the first metrics); with
        ``tracking.image_every``, the first validation images are kept for the epoch pictures."""
        name = self.config.data.name if self.config is not None else "data"
        source = target_of(type(self.config.data)) if self.config is not None else "unknown"
        dataset = dataset_input(name, data, source=source)
        self.dataset = (dataset.dataset.name, dataset.dataset.digest)
        self.unsent_inputs.append(dataset)
        if self.spec.log_images and self.image_every and data.image_shape is not None:
            count = self.config.trainer.image_count if self.config is not None else 8
            self.pictured = (model, data.val[:count].clone(), data.image_shape)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch <= self.logged_through:  # logged by the attempt this run resumes
            return
        self.log_epoch(metrics, epoch)
        last = self.config.trainer.epochs if self.config is not None else None
        if self.pictured is not None and epoch_image_due(epoch, self.image_every, last):
            self.log_epoch_pictures(epoch)
        if TRACKING not in self.failures and time.monotonic() - self.last_flush >= self.spec.flush_seconds:
            self.flush()

    def log_epoch_pictures(self, epoch: int) -> None:
        """The kept validation images above the model's reconstructions of them, as the stepped
        image ``reconstructions`` (the MLflow UI's image slider); the time is the epoch's, also
        when a failing store makes it reach the store only at the end."""
        model, inputs, shape = self.pictured  # type: ignore[misc]
        image = image_grid([inputs.cpu(), reconstruct(model, inputs)], shape)
        now = int(time.time() * 1000)
        upload = functools.partial(
            self.client.log_image, self.run_id, image, key=EPOCH_IMAGES_KEY, step=epoch, timestamp=now
        )
        self.send(f"the pictures of epoch {epoch}", upload, (ARTIFACTS, TRACKING))

    def on_resume(self, epoch: int, history: list[dict[str, float]]) -> None:
        """The checkpoint's epochs that the dead attempt had not sent yet."""
        for step, metrics in enumerate(history, start=1):
            if step > self.logged_through:
                self.log_epoch(metrics, step)
        self.logged_through = max(self.logged_through, epoch)

    def on_checkpoint(self, epoch: int, path: Path) -> None:
        """The epochs so far and the checkpoint itself reach the store: a retry on another
        machine resumes from the artifact."""
        self.flush()
        self.send("checkpoint", functools.partial(self.upload, path, "checkpoint"), ARTIFACTS)

    def log_epoch(self, metrics: Mapping[str, float], epoch: int) -> None:
        """Queue one epoch's metrics under their per-epoch keys (``epoch/val_loss``), step = epoch."""
        self.log_metrics({epoch_key(name): value for name, value in metrics.items()}, step=epoch)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue metrics with their wall-clock time; they reach the store at the next flush."""
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    def flush(self) -> None:
        """Send the queued metrics in ``log_batch`` calls of at most MLflow's 1000 entries; the
        ones a failing store did not take stay queued."""
        while self.pending:
            batch = self.pending[:METRICS_PER_BATCH]
            send_batch = functools.partial(self.client.log_batch, self.run_id, metrics=batch)
            if not self.send("metrics", send_batch, defer=False):
                break
            del self.pending[: len(batch)]
        if self.unsent_inputs:  # after the metrics: no store call of its own before training
            inputs, self.unsent_inputs = self.unsent_inputs, []
            self.send("the data set", functools.partial(self.client.log_inputs, self.run_id, datasets=inputs))
        self.last_flush = time.monotonic()

    def end(self, status: str, tags: Mapping[str, str] | None = None) -> None:
        """Try the calls a failing store put off once more (MLflow's client backs off between its
        own attempts), send the queued metrics, close the run, and name in one warning whatever
        still could not be logged."""
        deferred, self.deferred = self.deferred, []
        self.failures.clear()
        for what, store, call in deferred:
            self.send(what, call, store)
        self.flush()
        if tags:
            run_tags = [RunTag(key, value) for key, value in tags.items()]
            self.send("tags", lambda: self.client.log_batch(self.run_id, tags=run_tags))
        self.send(f"the end of the run ({status})", lambda: self.client.set_terminated(self.run_id, status))
        self.pictured = None  # the model and its data are the caller's again
        unlogged = [what for what, _, _ in self.deferred] + (
            [f"{len(self.pending)} metric values"] if self.pending else []
        )
        if unlogged:
            log.warning(
                "could not log to MLflow store %s for run %s: %s (%s); the result itself is not lost",
                masked(self.spec.uri),
                self.run_id,
                ", ".join(unlogged),
                "; ".join(f"{store}: {error}" for store, error in self.failures.items()),
            )

    def finish(self, result: TrainResult) -> None:
        """Final metrics, the model's state_dict, the MLflow model and pictures; then the run is FINISHED."""
        self.log_metrics({name: result.metrics[name] for name in FINAL_METRICS}, step=len(result.history))
        final = self.pending[-len(FINAL_METRICS) :]
        self.flush()
        with tempfile.TemporaryDirectory() as folder:  # kept until the end: a put-off upload reads it
            if self.spec.log_model:
                path = Path(folder) / "state_dict.pt"
                torch.save(result.model.state_dict(), path)
                self.send(WEIGHTS_ARTIFACT, functools.partial(self.upload, path, "model"), ARTIFACTS)
            if self.spec.log_images and result.image_shape is not None:
                pairs = image_grid([result.test_inputs, result.reconstructions], result.image_shape)
                samples = image_grid([result.prior_samples], result.image_shape)
                for name, image in (("reconstructions.png", pairs), ("prior_samples.png", samples)):
                    path = write_png(image, Path(folder) / name)
                    self.send(name, functools.partial(self.upload, path), ARTIFACTS)
            if self.mlflow_model:
                self.send("the MLflow model", self.model_upload(result, Path(folder), final), (ARTIFACTS, TRACKING))
            self.end("FINISHED", tags={POSTERIOR_COLLAPSE_TAG: str(result.metrics["active_units"] == 0).lower()})

    def model_upload(self, result: TrainResult, folder: Path, final: list[Metric]) -> ModelUpload:
        """The MLflow model of ``result``, named after the model option, with the run's technique
        tags and final metrics (the Models tab compares models by them)."""
        name = (self.config.model.name if self.config is not None else "") or "vae"
        if name == WEIGHTS_ARTIFACT.partition("/")[0]:  # MLflow 3 reads runs:/<id>/model as a model of that name
            name = "vae"
        return ModelUpload(
            client=self.client,
            run_id=self.run_id,
            model=result.model,
            sample_shape=tuple(result.test_inputs.shape[1:]),
            folder=folder,
            name=name,
            step=len(result.history),
            tags=technique_tags(self.config) if self.config is not None else {},
            metrics=final,
            dataset=self.dataset,
            experiment_id=self.experiment_id,
        )

    def prune(self, epoch: int) -> None:
        """A pruned run ends normally, its curves kept, marked with the epoch it stopped at: a
        tag to filter on (``tags.pruned_at_epoch``), its name (``... (pruned at epoch 5)``) and its
        description, so that the runs table tells it from a trial that ran to the end."""

        def rename() -> None:
            name = self.client.get_run(self.run_id).info.run_name
            self.client.update_run(self.run_id, name=f"{name} (pruned at epoch {epoch})")

        self.send("the pruned run's name", rename)
        note = (
            f"Pruned after epoch {epoch}: Optuna's pruner found it unpromising against the study's other "
            "trials at that epoch and stopped it. Its curves end there; it has no test metrics."
        )
        self.end("FINISHED", {PRUNED_AT_TAG: str(epoch), NOTE_TAG: note})

    def fail(self, reason: str, detail: str = "", status: str = "FAILED") -> None:
        self.end(status, {FAILURE_REASON_ATTR: reason, **({FAILURE_DETAIL_TAG: detail[:5000]} if detail else {})})
