"""Row 1 of the benchmark: our trainer's throughput against the plain loop, on the same data.

Both sides train the pytorch/examples network (784-400-20, batch 128, Adam lr 1e-3) on the
training split of one synthetic MNIST-shaped data set, with the same thread count; each reports
training samples per second, excluding data generation and evaluation. The sides are interleaved
(and their order alternated) so a slow spell on the machine hits both, not one.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass, field

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from vae_sweep.bench.baseline import ExampleConvVAE, ExampleVAE, plain_samples_per_sec
from vae_sweep.hydra_version import VERSION_BASE
from vae_sweep.train.config import RunConfig, parse_run_config
from vae_sweep.train.conv import ConvVAESpec
from vae_sweep.train.loop import train

MODEL = "mlp_400_20"
CONV_MODEL = "conv"  # model=conv: two stride-2 convolutions (32, 64 channels), a 32-d latent
BATCH_SIZE = 128
WARM_UP_ROWS = 1024  # enough batches to pay the process's one-time costs (first Adam step, kernels)
VAL_FRACTION = 0.1  # the synthetic data set's defaults, see vae_sweep/conf/data/synthetic.yaml
TEST_FRACTION = 0.2


@dataclass
class ThroughputRun:
    """Samples per second of each repeat, for our trainer and for the plain loop."""

    n_train: int
    epochs: int
    threads: int
    ours: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)

    @staticmethod
    def summary(values: list[float]) -> dict[str, float]:
        return {"min": min(values), "median": statistics.median(values)}


def samples_for_training_rows(n_train: int) -> int:
    """The smallest ``data.n_samples`` whose train split (after val and test) holds ``n_train`` rows,
    so that "60k samples" means 60k training samples on both sides."""
    n = n_train
    while n - int(n * VAL_FRACTION) - int(n * TEST_FRACTION) < n_train:
        n += 1
    return n


def run_config(n_samples: int, *, epochs: int, threads: int, device: str = "cpu", model: str = MODEL) -> RunConfig:
    """Compose the benchmark run the way ``vae-train`` would; validation runs only after the last
    epoch and the test bound uses one sample, since neither is timed and both only cost wall time."""
    overrides = [
        "data=synthetic",
        f"data.n_samples={n_samples}",
        "data.side=28",
        f"model={model}",
        "optimizer=adam",
        f"trainer.batch_size={BATCH_SIZE}",
        f"trainer.epochs={epochs}",
        f"trainer.eval_every={epochs}",
        "trainer.iwae_samples=1",
        "tracking=none",
        f"trainer.num_threads={threads}",
        "trainer.deterministic=false",
        f"trainer.device={device}",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="vae_sweep.conf", **VERSION_BASE):
        return parse_run_config(compose(config_name="config", overrides=overrides))


def ours_samples_per_sec(config: RunConfig) -> float:
    return train(config).metrics["samples_per_sec"]


def plain_run(train_split: torch.Tensor, config: RunConfig, threads: int) -> float:
    """The plain loop with our model's sizes and the same thread count, restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return plain_samples_per_sec(
            train_split,
            functools.partial(plain_model, config, train_split[0]),
            batch_size=config.trainer.batch_size,
            epochs=config.trainer.epochs,
            seed=config.trainer.seed,
            device=config.trainer.device.value,
        )
    finally:
        torch.set_num_threads(previous)


def plain_model(config: RunConfig, sample: torch.Tensor) -> torch.nn.Module:
    """The plain loop's model with our model's sizes: the conv one for ``model=conv``."""
    if isinstance(config.model, ConvVAESpec):
        return ExampleConvVAE(config.model.channels, config.model.latent_dim, sample.shape[-1])
    return ExampleVAE(sample.numel(), config.model.encoder_hidden[0], config.model.latent_dim)


def warm_up(*, threads: int, train_split: torch.Tensor, config: RunConfig, model: str, device: str) -> None:
    """Run both sides once, untimed, on a small slice: the first training step in a process pays
    one-time costs (seconds here) that would otherwise land on whichever side happens to go first."""
    rows = samples_for_training_rows(WARM_UP_ROWS)
    ours_samples_per_sec(run_config(rows, epochs=1, threads=threads, model=model, device=device))
    plain_run(train_split[:WARM_UP_ROWS], config, threads)


def measure_throughput(
    *, n_train: int, epochs: int, threads: int, repeats: int, model: str = MODEL, device: str = "cpu"
) -> tuple[ThroughputRun, RunConfig]:
    """Time both loops ``repeats`` times each, interleaved, on the same ``n_train`` training rows."""
    config = run_config(samples_for_training_rows(n_train), epochs=epochs, threads=threads, model=model, device=device)
    train_split = config.data.load().train
    warm_up(threads=threads, train_split=train_split, config=config, model=model, device=device)
    run = ThroughputRun(n_train=train_split.shape[0], epochs=epochs, threads=threads)
    for repeat in range(repeats):
        ours_first = repeat % 2 == 0
        if ours_first:
            run.ours.append(ours_samples_per_sec(config))
        run.plain.append(plain_run(train_split, config, threads))
        if not ours_first:
            run.ours.append(ours_samples_per_sec(config))
    return run, config
