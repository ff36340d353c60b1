"""Row 7: time per epoch and peak memory as the data grows, and memory over a long sweep.

Each data size trains in a fresh process (``python -m vae_sweep.bench.scale OVERRIDE...``
prints one JSON line), so its peak RSS is its own. The long sweep runs many tiny trials in one
worker process with ``timed_sweep``, which records the process's RSS after every trial.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vae_sweep.bench.sweeps import run_in
from vae_sweep.hydra_version import VERSION_BASE

EPOCHS = 2
# (label, overrides): scikit-learn's digits, then MNIST-shaped synthetic data of growing size.
DATA_SIZES = {
    "full": (
        ("digits 8x8", ["data=digits"]),
        ("synthetic 28x28", ["data=synthetic", "data.side=28", "data.n_samples=20000"]),
        ("synthetic 28x28", ["data=synthetic", "data.side=28", "data.n_samples=85715"]),
        ("synthetic 28x28", ["data=synthetic", "data.side=28", "data.n_samples=342858"]),
    ),
    "quick": (("digits 8x8", ["data=digits"]),),
}
TINY_TRIAL = ("debug=tiny",)  # conf/debug/tiny.yaml: trials of a second or two


@dataclass
class EpochProbe:
    label: str
    train_rows: int
    seconds_per_epoch: float
    peak_rss_mb: float

    @property
    def us_per_row(self) -> float:
        return self.seconds_per_epoch / self.train_rows * 1e6


def current_rss_mb() -> float:
    """Resident memory now (Linux ``/proc``); elsewhere the peak, which can only overstate growth."""
    return proc_status_mb("VmRSS") or peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``ru_maxrss`` would carry over the peak of the
    process that forked this one (the benchmark's own), so ``/proc``'s VmHWM comes first."""
    return proc_status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(field: str) -> float | None:
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    return None


def probe(label: str, overrides: list[str], threads: int) -> EpochProbe:
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
        out = Path(folder) / "probe.json"
        run_in(Path(folder), [sys.executable, "-m", "vae_sweep.bench.scale", str(out), str(threads), *overrides], label)
        return EpochProbe(label=label, **json.loads(out.read_text()))


def data_scaling(mode: str, threads: int) -> list[EpochProbe]:
    return [probe(label, overrides, threads) for label, overrides in DATA_SIZES[mode]]


def long_sweep_rss(trials: int) -> list[float]:
    """RSS (MiB) after each of ``trials`` tiny trials run by one worker process, MLflow tracking on."""
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
        timings = Path(folder) / "timings.json"
        command = [sys.executable, "-m", "vae_sweep.bench.timed_sweep", str(timings), "-m", *TINY_TRIAL]
        sweep = [
            "hydra/sweeper=vae_sweep",
            "hydra/launcher=joblib",
            f"hydra.sweeper.n_trials={trials}",
            "hydra.sweeper.n_jobs=1",
            "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
        ]
        run_in(Path(folder), [*command, *sweep], f"{trials} tiny trials")
        return [record["rss_mb"] for record in json.loads(timings.read_text())]


def main(argv: list[str]) -> int:
    """Train ``EPOCHS`` epochs of the default model on the data ``argv[2:]`` selects; write the probe."""
    from hydra import compose, initialize_config_module

    from vae_sweep.train.config import parse_run_config
    from vae_sweep.train.loop import train

    out, threads, overrides = Path(argv[0]), int(argv[1]), argv[2:]
    run = [
        f"trainer.epochs={EPOCHS}",
        f"trainer.eval_every={EPOCHS}",
        "trainer.iwae_samples=1",
        f"trainer.num_threads={threads}",
        "tracking=none",
    ]
    with initialize_config_module(config_module="vae_sweep.conf", **VERSION_BASE):
        config = parse_run_config(compose(config_name="config", overrides=[*overrides, *run]))
    samples_per_sec = train(config).metrics["samples_per_sec"]  # training epochs only, no evaluation
    peak = peak_rss_mb()
    train_rows = config.data.load().train.shape[0]  # after the peak is read: a second copy of the data
    probe = {"train_rows": train_rows, "seconds_per_epoch": train_rows / samples_per_sec, "peak_rss_mb": peak}
    out.write_text(json.dumps(probe) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
