"""Names shared by the sweep, its workers and the tools that read studies back: Optuna trial and
study attributes, MLflow tags. A contract with stores written by earlier runs: never rename."""

from __future__ import annotations

# Optuna study user attributes.
BUDGET_ATTR = "vae_sweep.n_trials"  # the study's budget of original trials (retries come on top)
PARENT_RUN_ATTR = "mlflow_parent_run_id"
STUDY_UID_ATTR = "vae_sweep.study_uid"  # tags the parent run, so a rerun finds it if its id was never recorded
# The latest sweep command's overrides, {"task": [...], "hydra": [...]}: what vae-replicate runs again.
COMMAND_ATTR = "vae_sweep.command"
# A replication study (vae-replicate): {"of_study": the study it replicates, "of_run": its parent run}.
REPLICATES_OF_ATTR = "vae_sweep.replicates_of"

# Optuna trial user attributes.
RUN_ID_ATTR = "mlflow_run_id"
FAILURE_REASON_ATTR = "failure_reason"  # also an MLflow tag of the trial's run
PRUNED_FOR_ATTR = "vae_sweep.pruned_for"  # a trial pruned by a rule of ours, not the pruner: posterior_collapse
CHECKPOINT_ATTR = "vae_sweep.train.checkpoint"  # where the trial saves its checkpoint (trainer.checkpoint_every)

# Optuna trial system attributes written on a retry; the first two are Optuna's own
# (RetryHeartbeatStaleTrialCallback's), so Optuna's helpers read our retries too.
RETRY_OF_ATTR = "failed_trial"  # the first trial of the series
RETRY_HISTORY_ATTR = "retry_history"  # every trial before this one, oldest first
CRASH_RETRIES_ATTR = "vae_sweep.crash_retries"  # retries after crashes; interrupts do not count
# A replicate (vae-replicate): {"of_trial", "of_run", "seed"}, the trial it repeats with another
# seed; a system attribute, so a retry of the replicate keeps it.
REPLICATE_ATTR = "vae_sweep.replicate"

# Failure reasons a sweep records itself.
INTERRUPTED = "interrupted"
WORKER_DIED = "worker_died"
DISK_FULL = "disk_full"

# Where runs and studies go unless a config says otherwise.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_STORAGE = "sqlite:///optuna.db"
DEFAULT_EXPERIMENT = "vae-sweep"

# MLflow artifacts of a run.
CONFIG_ARTIFACT = "config.yaml"  # the resolved config, what vae-reproduce re-runs
WEIGHTS_ARTIFACT = "model/state_dict.pt"
EPOCH_IMAGES_KEY = "reconstructions"  # log_image key of the per-epoch pictures (images/ in the artifacts)

# MLflow tags.
FAILURE_DETAIL_TAG = "failure_detail"  # beside failure_reason: the error's message
PRUNED_AT_TAG = "pruned_at_epoch"
# "true" on a finished run none of whose latent dimensions is active on the test set
# (active_units = 0): the decoder ignores z, the posterior has collapsed to the prior.
POSTERIOR_COLLAPSE_TAG = "posterior_collapse"
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI
BEST_TRIAL_TAG = "best.trial_number"  # on the study's parent run, with BEST_RUN_TAG
REPRODUCED_FROM_TAG = "reproduced_from"  # a vae-reproduce run: the run it re-ran
VERDICT_TAG = "reproduce.verdict"
EXTENSION_TAG_PREFIX = "extension."  # extension.<module> = <package>==<version>, one per extension loaded
STUDY_ROLE_TAG = "vae_sweep.role"
TRIAL_STATE_TAG = "optuna.trial_state"
TRIAL_NUMBER_TAG = "optuna.trial_number"
STUDY_NAME_TAG = "optuna.study_name"
# A replicate's run: the study, trial and run it repeats, and its seed (REPLICATE_ATTR); a
# replication's parent run: the study and parent run it replicates (REPLICATES_OF_ATTR).
REPLICATE_TAG_PREFIX = "replicate."
REPLICATION_TAG_PREFIX = "replication."
PARENT_RUN_TAG = "mlflow.parentRunId"  # a trial's run -> the study's parent run
BEST_RUN_TAG = "best.run_id"  # on the parent run: the best trial's run so far (one objective)
DATASET_CONTEXT_TAG = "mlflow.data.context"  # on a run's dataset input: what the run used it for
RESUMED_AT_TAG = "vae_sweep.resumed_at_epoch"  # a retry that went on from a checkpoint, in the same run
# MLflow 3's UI opens an experiment in the view this tag names; without it, it may guess GenAI
# ("Evaluations", traces, prompts) instead of the model-training view our runs are made for.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
INCOMPLETE_TAG = "vae_sweep.incomplete"  # a run closed by a later sweep: its tracking server was down at its end
INCOMPLETE_NOTE = (
    "closed by a later sweep: the tracking server was down when the trial ended, so metrics or artifacts "
    "may be missing; Optuna has the trial's value (trial_value). vae-reproduce --study S --trial N trains it "
    "again into a complete run"
)

# Metric names: a contract with MLflow logging, sweeps and comparison reports. Never rename.
# Logged once per epoch with step = epoch. Losses are in nats per example: loss = recon + kl
# is the negative ELBO, recon the negative log-likelihood term, kl the analytic KL.
EPOCH_METRICS = ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "lr", "beta")
# Also per validated epoch, how the latent space is used: active units on the validation set,
# and the smallest, median and largest KL of one latent dimension (nats per example).
LATENT_METRICS = ("val_active_units", "val_kl_dim_min", "val_kl_dim_median", "val_kl_dim_max")

# Logged once at the end of a run.
FINAL_METRICS = (
    "test_loss",
    "test_recon",
    "test_kl",
    "test_iwae",  # negative k-sample IWAE bound (Burda et al., 2015); never above test_loss
    "test_bpd",  # test_iwae in bits per value (8 more for a Gaussian, counted against 8-bit pixels)
    "active_units",  # latent dims whose posterior mean varies over the test set (Cov > 0.01)
    "samples_per_sec",
    "train_seconds",
    "epochs_trained",  # fewer than trainer.epochs when early stopping ended the run
    "test_epoch",  # the epoch whose weights the test metrics measure: the last, or with restore_best the best
)

# Final metrics added after runs were first logged: an older run lacks them, and reproducing it
# compares the metrics both runs have.
NEWER_FINAL_METRICS = ("test_bpd", "epochs_trained", "test_epoch")

OBJECTIVES = EPOCH_METRICS[:6] + FINAL_METRICS[:6]

# The MLflow key of a per-epoch metric is its name under "epoch/": MLflow's UI draws a run's
# metrics in sections by the part before a slash, the named sections before the ungrouped final
# values, and titles each chart with the part after it. Stores written before kept the bare name.
EPOCH_KEY_PREFIX = "epoch/"


def epoch_key(name: str) -> str:
    """``val_loss`` -> ``epoch/val_loss``: the key a per-epoch metric is logged under."""
    return f"{EPOCH_KEY_PREFIX}{name}"


def by_metric_name(logged: dict[str, float]) -> dict[str, float]:
    """A run's MLflow metrics keyed by metric name (``val_loss``, ``test_loss``), whichever way
    the run logged them: the latest epoch's value of each per-epoch metric, and the final ones."""
    return {key.removeprefix(EPOCH_KEY_PREFIX): value for key, value in logged.items()}
