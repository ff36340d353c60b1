"""The run's config: the composed Hydra config turned into typed, validated specs.

``parse_run_config`` is the one gate every run passes before any data is loaded, so a typo
or an out-of-range value fails fast with a message naming the full key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from vae_sweep.errors import ConfigError, require
from vae_sweep.names import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI, OBJECTIVES
from vae_sweep.suggestions import did_you_mean
from vae_sweep.train.best_epoch import MONITORS
from vae_sweep.train.data import DataSpec
from vae_sweep.train.extensions import load_extensions
from vae_sweep.train.models import ModelSpec
from vae_sweep.train.optimizers import OptimizerSpec
from vae_sweep.train.progress import PROGRESS
from vae_sweep.train.regularization import RegularizationSpec
from vae_sweep.train.schedules import SchedulerSpec
from vae_sweep.train.specs import parse_spec, register

MAX_SEED = 2**32 - 1  # np.random.seed refuses larger ones
# Bumped when a change makes older logged config.yaml files mean something else.
CONFIG_VERSION = 1


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


# Numerical precision of training steps (evaluation is always float32): float32, bfloat16
# autocast (CPU and recent GPUs), or float16 autocast with a gradient scaler (CUDA only).
PRECISIONS = ("32", "bf16", "16-mixed")


@register
@dataclass
class TrainerSpec:
    epochs: int = 50
    batch_size: int = 32
    seed: int = 0
    deterministic: bool = True
    num_threads: int | None = None  # torch intra-op threads; None leaves torch's default
    device: Device = Device.cpu
    # The GPUs a sweep's workers share out: worker i trains on gpus[i mod len(gpus)]; null: every
    # visible GPU in turn (cuda:(i mod G)). A single run uses the first.
    gpus: list[int] | None = None
    precision: str = "32"
    # torch.compile the model's forward pass (nn.Module.compile: same state_dict keys). It pays
    # off for conv models on a GPU; the first epoch then includes the compile, tens of seconds.
    compile: bool = False
    eval_every: int = 1  # validate every N epochs (and always after the last)
    iwae_samples: int = 64  # k of the test IWAE bound
    image_count: int = 8  # test reconstructions and prior samples drawn for the run's pictures
    # Save a checkpoint every N epochs (0: never), so that a sweep trial whose worker died goes
    # on from there in the same MLflow run when it is retried.
    checkpoint_every: int = 0
    # A single run's per-epoch progress: auto (a bar on a terminal, else a line per epoch, none in
    # a multirun's log), bar, lines or off. Our sweeper's trials print one line each instead.
    progress: str = "auto"
    # Early stopping: training ends once ``monitor`` (a per-epoch loss) has not improved by more
    # than ``min_delta`` for ``patience`` checks in a row (null: never).
    patience: int | None = None
    min_delta: float = 0.0
    monitor: str = "val_loss"
    # Test metrics, pictures and logged weights from the epoch where ``monitor`` was best, not the
    # last one; the run's metrics are then that epoch's, and ``test_epoch`` says which it was.
    restore_best: bool = False

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        require(
            self.patience is None or self.patience >= 1,
            "patience",
            f"must be >= 1 (checks without improvement) or null (no early stopping), got {self.patience}",
        )
        require(self.min_delta >= 0, "min_delta", f"must be >= 0, got {self.min_delta}")
        require(
            self.monitor in MONITORS,
            "monitor",
            f"must be one of {', '.join(MONITORS)}, got {self.monitor!r}{did_you_mean(self.monitor, MONITORS)}",
        )
        require(
            self.progress in PROGRESS,
            "progress",
            f"must be one of {', '.join(PROGRESS)}, got {self.progress!r}{did_you_mean(self.progress, PROGRESS)}",
        )
        require(0 <= self.seed <= MAX_SEED, "seed", f"must be in [0, 2**32 - 1] (NumPy's seeds), got {self.seed}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(
            self.num_threads is None or self.num_threads >= 1,
            "num_threads",
            f"must be >= 1 or null, got {self.num_threads}",
        )
        require(self.eval_every >= 1, "eval_every", f"must be >= 1, got {self.eval_every}")
        require(self.iwae_samples >= 1, "iwae_samples", f"must be >= 1, got {self.iwae_samples}")
        require(self.image_count >= 1, "image_count", f"must be >= 1, got {self.image_count}")
        require(
            self.precision in PRECISIONS,
            "precision",
            f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}{did_you_mean(self.precision, PRECISIONS)}",
        )
        require(
            self.gpus is None or (len(self.gpus) > 0 and all(gpu >= 0 for gpu in self.gpus)),
            "gpus",
            f"must be a non-empty list of CUDA device indices >= 0, or null, got {self.gpus}",
        )
        require(
            self.checkpoint_every >= 0,
            "checkpoint_every",
            f"must be >= 0 (0 saves no checkpoints), got {self.checkpoint_every}",
        )

    def resolve_device(self) -> torch.device:
        """The device this process trains on: CUDA means the process's current CUDA device (a
        sweep worker's, see ``worker_gpu``). Refuses what this machine cannot do."""
        require(
            self.device is not Device.cuda or torch.cuda.is_available(),
            "trainer.device",
            "cuda was asked for but torch sees no CUDA device; use cpu or auto",
        )
        cuda = self.device is Device.cuda or (self.device is Device.auto and torch.cuda.is_available())
        require(
            self.precision != "16-mixed" or cuda,
            "trainer.precision",
            "16-mixed (float16 autocast with a gradient scaler) needs a CUDA device; use 32 or bf16 on the cpu",
        )
        if not cuda:
            return torch.device("cpu")
        visible = torch.cuda.device_count()
        unseen = [gpu for gpu in self.gpus or () if gpu >= visible]
        if unseen:
            raise ConfigError("trainer.gpus", f"GPU {unseen[0]} is not visible: torch sees {visible}")
        index = torch.cuda.current_device()
        return torch.device("cuda", index if not self.gpus or index in self.gpus else self.gpus[0])


def worker_gpu(worker: int, visible: int, gpus: Sequence[int] | None) -> int | None:
    """The CUDA device of a sweep's worker number ``worker``: the user's ``gpus`` in turn, or
    every one of the ``visible`` GPUs in turn; None on a machine without one.

    >>> [worker_gpu(i, 4, None) for i in range(6)]
    [0, 1, 2, 3, 0, 1]
    >>> [worker_gpu(i, 4, [2, 3]) for i in range(3)], worker_gpu(0, 0, None)
    ([2, 3, 2], None)
    """
    if visible == 0:
        return None
    choices = list(gpus) if gpus else list(range(visible))
    return choices[worker % len(choices)]


@dataclass
class TrackingSpec:
    name: str = ""


@register
@dataclass
class MlflowTracking(TrackingSpec):
    name: str = "mlflow"
    uri: str = DEFAULT_TRACKING_URI
    experiment: str = DEFAULT_EXPERIMENT
    run_name: str | None = None
    log_model: bool = True
    log_images: bool = True
    # The trained model as an MLflow model too (the runs table's Models column, the registry), and
    # reconstructions of fixed validation images every N epochs and after the last (the MLflow UI's
    # image slider; 0: none; needs log_images). None: what the run can afford, yes and every 5
    # epochs for a single run, neither for a sweep's trial, a -m job (40 and 33 ms of a 1.3 s trial).
    mlflow_model: bool | None = None
    image_every: int | None = None
    # Epoch metrics are sent at most this often (and when the run ends): one database write per
    # epoch would cost more than a short epoch itself.
    flush_seconds: float = 2.0

    def __post_init__(self) -> None:
        require(bool(self.uri), "uri", "must not be empty")
        require(bool(self.experiment), "experiment", "must not be empty")
        require(
            self.flush_seconds >= 0, "flush_seconds", f"must be >= 0 (0 sends every epoch), got {self.flush_seconds}"
        )
        require(
            self.image_every is None or self.image_every >= 0,
            "image_every",
            f"must be >= 0 (0 logs none) or null, got {self.image_every}",
        )


@register
@dataclass
class NoTracking(TrackingSpec):
    name: str = "none"


GROUPS: dict[str, type] = {
    "data": DataSpec,
    "model": ModelSpec,
    "optimizer": OptimizerSpec,
    "scheduler": SchedulerSpec,
    "regularization": RegularizationSpec,
    "trainer": TrainerSpec,
    "tracking": TrackingSpec,
}
TOP_LEVEL_KEYS = (*GROUPS, "objective", "config_version", "extensions")


@dataclass(frozen=True)
class RunConfig:
    data: DataSpec
    model: ModelSpec
    optimizer: OptimizerSpec
    scheduler: SchedulerSpec
    regularization: RegularizationSpec
    trainer: TrainerSpec
    tracking: TrackingSpec
    objectives: tuple[str, ...] = ("val_loss",)  # one metric, or several for a multi-objective study


def parse_run_config(cfg: DictConfig | dict[str, Any], *, load: bool = True) -> RunConfig:
    """Validate a composed config (or a loaded ``config.yaml``) into a ``RunConfig``, after
    importing the installed extensions and those the config lists (``load=False``: the caller
    loaded what it trusts, as vae-reproduce does for a fetched config)."""
    container = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    for key in container:
        if key not in TOP_LEVEL_KEYS:
            hint = did_you_mean(key, TOP_LEVEL_KEYS, before="", after=" ")
            raise ConfigError(str(key), f"unknown top-level key; {hint}allowed: {', '.join(TOP_LEVEL_KEYS)}")
    version = container.get("config_version", CONFIG_VERSION)
    require(
        version == CONFIG_VERSION,
        "config_version",
        f"this config was written for config version {version}; this vae-sweep reads version {CONFIG_VERSION}",
    )
    extensions = container.get("extensions") or []
    require(
        isinstance(extensions, (list, tuple, ListConfig)),
        "extensions",
        f"must be a list of module names such as [mypkg.vae_specs], got {extensions!r}",
    )
    if load:
        load_extensions(list(extensions))  # before any _target_ is looked up
    missing = [group for group in GROUPS if group not in container]
    if missing:
        raise ConfigError(missing[0], f"missing config group; every run needs {', '.join(GROUPS)}")
    specs = {group: parse_spec(container[group], group, base) for group, base in GROUPS.items()}
    return RunConfig(objectives=parse_objectives(container.get("objective", "val_loss")), **specs)


def parse_objectives(objective: Any) -> tuple[str, ...]:
    """``objective`` is one metric name or a list of them (multi-objective)."""
    names = tuple(objective) if isinstance(objective, (list, tuple, ListConfig)) else (objective,)
    require(len(names) > 0, "objective", "needs at least one metric")
    for name in names:
        if name not in OBJECTIVES:
            hint = did_you_mean(name, OBJECTIVES, before="", after=" ")
            raise ConfigError("objective", f"unknown metric {name!r}; {hint}choose one of {', '.join(OBJECTIVES)}")
    return names
