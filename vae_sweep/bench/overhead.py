"""Row 3: what a sweep trial costs beyond its training, and where that time goes.

A real ``vae-train -m`` sweep (``timed_sweep``) runs identical digits trials (20 epochs; 3 in --quick), so every
trial trains exactly what a bare ``train(config)`` call trains; the bare calls run in this
process, between the sweeps. A trial's overhead is its period in the sweep (from the end of one
trial to the end of the next, trial 0 left out: it pays the imports) minus the bare training
time. The levers are also measured before/after in the same run: Hydra's full composition
against our cached one, and one MLflow write per epoch (``tracking.flush_seconds=0``).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from vae_sweep.bench.sweeps import run_in
from vae_sweep.bench.timed_sweep import NOT_STEPS
from vae_sweep.hydra_version import VERSION_BASE
from vae_sweep.train.config import parse_run_config
from vae_sweep.train.loop import train

# (name, extra overrides): the trial as the issue defines it, then with a pruner, then before the MLflow lever.
PER_EPOCH_WRITES = "one MLflow write per epoch"
VARIANTS = {
    "sweep trial": ("hydra.sweeper.pruner.name=none",),
    "+ median pruner": ("hydra.sweeper.pruner.name=median",),
    PER_EPOCH_WRITES: ("hydra.sweeper.pruner.name=none", "tracking.flush_seconds=0"),
}


@dataclass
class OverheadRun:
    threads: int
    trials: int
    epochs: int  # of every trial, swept and bare
    bare_ms: list[float] = field(default_factory=list)  # one per bare training
    # variant -> per-trial records: step label -> ms, plus "period" (the trial's wall time in the sweep)
    sweeps: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    compose_ms: dict[str, float] = field(default_factory=dict)  # "hydra" / "cached" -> median ms

    def period_ms(self, variant: str) -> float:
        return statistics.median(record["period"] for record in self.sweeps[variant])

    def step_ms(self, variant: str) -> dict[str, float]:
        """Median ms per step; 'unattributed' is the period not covered by any timed step."""
        records = self.sweeps[variant]
        labels = sorted({label for record in records for label in record} - set(NOT_STEPS))
        steps = {label: statistics.median(record.get(label, 0.0) for record in records) for label in labels}
        steps["unattributed (worker loop)"] = statistics.median(
            record["period"] - sum(v for k, v in record.items() if k not in NOT_STEPS) for record in records
        )
        return steps

    def overhead_ms(self, variant: str) -> float:
        return self.period_ms(variant) - statistics.median(self.bare_ms)


def trial_overrides(epochs: int) -> list[str]:
    """The one trial every sweep and bare training runs."""
    return [f"trainer.epochs={epochs}", "optimizer.lr=0.001"]


def sweep_overrides(variant: str, trials: int, threads: int, epochs: int) -> list[str]:
    return [
        "-m",
        *trial_overrides(epochs),
        f"trainer.num_threads={threads}",
        "hydra/sweeper=vae_sweep",
        "hydra/launcher=joblib",
        "hydra.sweeper.study_name=overhead",
        f"hydra.sweeper.n_trials={trials}",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.sampler.name=random",
        "optimizer.lr=choice(0.001)",  # one value: every trial trains the same thing
        *VARIANTS[variant],
    ]


def timed_sweep(variant: str, trials: int, threads: int, epochs: int) -> list[dict[str, float]]:
    """Per-trial step times of one sweep in a fresh folder (its own SQLite stores), trial 0 dropped."""
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as folder:
        timings = Path(folder) / "timings.json"
        command = [sys.executable, "-m", "vae_sweep.bench.timed_sweep", str(timings)]
        run_in(Path(folder), [*command, *sweep_overrides(variant, trials, threads, epochs)], variant)
        return json.loads(timings.read_text())[1:]


def bare_config(threads: int, epochs: int):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="vae_sweep.conf", **VERSION_BASE):
        overrides = [*trial_overrides(epochs), f"trainer.num_threads={threads}", "tracking=none"]
        return parse_run_config(compose(config_name="config", overrides=overrides))


def bare_ms(threads: int, n: int, epochs: int) -> list[float]:
    config = bare_config(threads, epochs)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        train(config)
        times.append((time.perf_counter() - start) * 1000)
    return times


def compose_ms(repeats: int = 10) -> dict[str, float]:
    """One trial's composition of the ``techniques`` study: Hydra's ``load_sweep_config`` vs ours."""
    from hydra import compose, initialize_config_module

    from vae_sweep.sweep.compose import TrialComposer

    GlobalHydra.instance().clear()
    initialize_config_module("vae_sweep.conf", job_name="vae-train", **VERSION_BASE)
    master = compose("config", ["study=techniques", "hydra.mode=MULTIRUN"], return_hydra_config=True)
    loader = GlobalHydra.instance().config_loader()
    overrides = [
        "study=techniques",
        "optimizer=adam",
        "scheduler=cosine",
        "model.activation=prelu",
        "optimizer.lr=0.001",
    ]
    composer = TrialComposer(loader, master)
    composer.compose(overrides)  # the first trial of a combination composes in full and caches
    results = {}
    for name, compose_one in (
        ("hydra", lambda: loader.load_sweep_config(master, overrides)),
        ("cached", lambda: composer.compose(overrides)),
    ):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            compose_one()
            times.append((time.perf_counter() - start) * 1000)
        results[name] = statistics.median(times)
    GlobalHydra.instance().clear()
    return results


def measure_overhead(*, trials: int, threads: int, repeats: int, variants: tuple[str, ...], epochs: int) -> OverheadRun:
    """Sweeps of each of ``variants`` (keys of VARIANTS) and bare trainings, interleaved ``repeats`` times."""
    run = OverheadRun(threads=threads, trials=trials, epochs=epochs)
    bare_ms(threads, 1, epochs)  # warm-up: the process's first training pays one-time costs
    for _ in range(repeats):
        for variant in variants:
            run.sweeps.setdefault(variant, []).extend(timed_sweep(variant, trials, threads, epochs))
            run.bare_ms.extend(bare_ms(threads, max(1, trials // len(variants)), epochs))
    run.compose_ms = compose_ms()
    return run
