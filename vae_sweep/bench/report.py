"""The results as numbers (for ``--json``) and as the ``docs/performance.md`` page."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vae_sweep.bench.gpu import GpuRun, gpu_section
from vae_sweep.bench.overhead import PER_EPOCH_WRITES, OverheadRun
from vae_sweep.bench.scale import EpochProbe
from vae_sweep.bench.sweeps import SweepResult, study_pruner
from vae_sweep.bench.targets import (
    OVERHEAD_TARGET_FRACTION,
    OVERHEAD_TARGET_MS,
    PEAK_FRACTION_TARGET,
    PRUNING_BEST_TOLERANCE,
    PRUNING_EPOCH_FRACTION,
    RERUN_TARGET,
    SCALING_TARGET,
    THROUGHPUT_TARGET,
    VERSUS_SCRIPT_TARGET,
    met,
    verdict,
)
from vae_sweep.bench.timed_sweep import TRAINING
from vae_sweep.bench.trainer import BATCH_SIZE, CONV_MODEL, MODEL, ThroughputRun
from vae_sweep.bench.versus_script import VersusScript


@dataclass
class Results:
    command: str
    load_before: float  # 1-minute load average when the run started: other work skews every number
    repeats: int
    throughput: ThroughputRun
    flops_per_sample: int
    peak_gflops: float
    overhead: OverheadRun | None = None
    scaling: dict[int, SweepResult] | None = None
    pruning: dict[str, list[SweepResult]] | None = None
    samplers: dict[str, list[SweepResult]] | None = None
    data_scaling: list[EpochProbe] | None = None
    long_sweep_rss_mb: list[float] | None = None
    versus: VersusScript | None = None
    conv: ThroughputRun | None = None  # rows 1-2 for model=conv
    conv_flops_per_sample: int = 0
    gpu: GpuRun | None = None

    def gflops(self, samples_per_sec: float) -> float:
        return self.flops_per_sample * samples_per_sec / 1e9

    def as_dict(self) -> dict[str, Any]:
        """Raw numbers, every repeat included, for tracking performance across commits."""
        run = self.throughput
        return {
            "command": self.command,
            "machine": machine(),
            "load_average_before": self.load_before,
            "model": MODEL,
            "batch_size": BATCH_SIZE,
            "n_train": run.n_train,
            "epochs": run.epochs,
            "threads": run.threads,
            "repeats": self.repeats,
            "samples_per_sec": {"ours": run.ours, "plain": run.plain},
            "flops_per_sample": self.flops_per_sample,
            "sgemm_peak_gflops": self.peak_gflops,
            "overhead": dataclasses.asdict(self.overhead) if self.overhead else None,
            "scaling": {n: dataclasses.asdict(r) for n, r in (self.scaling or {}).items()},
            "pruning": {k: [dataclasses.asdict(r) for r in v] for k, v in (self.pruning or {}).items()},
            "samplers": {k: [dataclasses.asdict(r) for r in v] for k, v in (self.samplers or {}).items()},
            "data_scaling": [dataclasses.asdict(p) for p in self.data_scaling or []],
            "long_sweep_rss_mb": self.long_sweep_rss_mb,
            "versus_script": dataclasses.asdict(self.versus) if self.versus else None,
            "conv": dataclasses.asdict(self.conv) if self.conv else None,
            "conv_flops_per_sample": self.conv_flops_per_sample,
            "gpu": dataclasses.asdict(self.gpu) if self.gpu else None,
        }


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, falling back to ``platform`` off Linux."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
    }


def render(results: Results) -> str:
    """The page: machine, command, then one table per benchmark row; targets judged on medians."""
    run = results.throughput
    ours, plain = run.summary(run.ours), run.summary(run.plain)
    ratio = {stat: ours[stat] / plain[stat] for stat in ("min", "median")}
    info = machine()
    lines = [
        "# Performance",
        "",
        "Training throughput of `vae_sweep.train.train` against a plain PyTorch loop written the way",
        "pytorch/examples `vae/main.py` writes it (`DataLoader` over a `TensorDataset`, shuffle, `.item()`",
        "every step), and the achieved GFLOP/s of both against the machine's sgemm peak; then what a sweep",
        "adds to each trial, how sweeps scale, prune and sample, and how time and memory grow. How the",
        "numbers got here (profiles, fixes, before and after): [performance-history.md](performance-history.md).",
        "CUDA numbers (conv trials, precisions, `torch.compile`, a 2-worker sweep, the same throughput",
        "comparison on a GPU) come from `.ci/gpu-check`, dated, in",
        "[its table](performance-history.md#gpu-check). Generated by:",
        "",
        "```bash",
        results.command,
        "```",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {run.threads} threads;",
        f"  1-minute load average at the start: {results.load_before:.2f} (other processes skew every number)",
        f"- Workload: model `{MODEL}` (784-400-20), batch {BATCH_SIZE}, Adam lr 1e-3, {run.n_train} synthetic",
        f"  MNIST-shaped training samples in [0, 1] (the same tensor on both sides), {run.epochs} epoch(s) per run,",
        f"  {results.repeats} interleaved repeat(s); samples/s counts training epochs only (no data generation or",
        "  evaluation). Targets are judged on medians.",
        "",
        "## 1. Trainer throughput vs a plain PyTorch loop",
        "",
        "| | samples/s (min) | samples/s (median) |",
        "|---|---:|---:|",
        f"| ours (`vae_sweep.train.train`) | {ours['min']:,.0f} | {ours['median']:,.0f} |",
        f"| plain loop (pytorch/examples) | {plain['min']:,.0f} | {plain['median']:,.0f} |",
        f"| **ratio ours / plain** | {ratio['min']:.2f} | **{ratio['median']:.2f}** |",
        "",
        f"Target: ratio >= {THROUGHPUT_TARGET:.2f}. Met: **{verdict(ratio['median'], THROUGHPUT_TARGET)}**.",
        *conv_rows(results),
        "",
        "## 2. Achieved GFLOP/s vs the sgemm peak",
        "",
        f"Peak: best of 10 float32 `torch.mm` of 1024 x 1024 x 1024 on {run.threads} threads:",
        f"**{results.peak_gflops:.1f} GFLOP/s**. Training cost: {results.flops_per_sample / 1e6:.2f} MFLOP per sample,",
        "6 x in x out per `nn.Linear` (forward 2, backward 4), encoder, mu / log-variance heads and decoder;",
        "elementwise work is not counted.",
        "",
        "| | GFLOP/s (median) | achieved / peak | target | met |",
        "|---|---:|---:|---:|---|",
    ]
    sides = [("ours", ours, results.flops_per_sample), ("plain loop", plain, results.flops_per_sample)]
    if results.conv:
        conv = results.conv
        sides += [
            ("ours, conv", conv.summary(conv.ours), results.conv_flops_per_sample),
            ("plain loop, conv", conv.summary(conv.plain), results.conv_flops_per_sample),
        ]
    for name, stats, flops in sides:
        achieved = flops * stats["median"] / 1e9
        fraction = achieved / results.peak_gflops
        lines.append(
            f"| {name} | {achieved:.1f} | {fraction:.0%} | >= {PEAK_FRACTION_TARGET:.0%} | "
            f"{verdict(fraction, PEAK_FRACTION_TARGET)} |"
        )
    if results.conv:
        lines += [
            "",
            f"The conv model costs {results.conv_flops_per_sample / 1e6:.1f} MFLOP per sample (convolutions counted",
            "as in_channels x kernel multiply-accumulates per output element, transposed ones per input element).",
        ]
    for section, data in (
        (overhead_section, results.overhead),
        (scaling_section, results.scaling),
        (pruning_section, results.pruning),
        (sampler_section, results.samplers),
        (data_scaling_section, results.data_scaling),
        (long_sweep_section, results.long_sweep_rss_mb),
        (versus_script_section, results.versus),
    ):
        if data:
            lines += ["", *section(data)]
    if results.gpu:
        lines += [
            "",
            *gpu_section(results.gpu, {MODEL: results.flops_per_sample, CONV_MODEL: results.conv_flops_per_sample}),
        ]
    return "\n".join(lines) + "\n"


def overhead_section(run: OverheadRun) -> list[str]:
    variants = list(run.sweeps)
    bare = statistics.median(run.bare_ms)
    steps = {variant: run.step_ms(variant) for variant in variants}
    labels = sorted({label for variant in variants for label in steps[variant]}, key=lambda k: (k == TRAINING, k))
    lines = [
        "## 3. Per-trial framework overhead",
        "",
        f"Identical {run.epochs}-epoch digits trials (the default model, Adam, {run.threads} thread(s)) run as a real",
        "sweep (`vae-train -m`, our sweeper, joblib launcher with one worker, local SQLite Optuna and MLflow stores,",
        "config.yaml + state_dict + two images per run) and bare (`train(config)`, no tracking), interleaved.",
        f"Median ms per trial over {len(run.sweeps[variants[0]])} trials per variant (each sweep's first trial,",
        "which pays the imports, left out). Each step's time is exclusive (steps nested in it are subtracted),",
        "so the steps add up to the trial's period in the sweep.",
        "",
        "| step (ms per trial) | " + " | ".join(variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(f"{steps[v].get(label, 0.0):.1f}" for v in variants) + " |")
    framework = {v: sum(ms for label, ms in steps[v].items() if label != TRAINING) for v in variants}
    lines += [
        "| **framework total (all steps but training)** | "
        + " | ".join(f"**{framework[v]:.0f}**" for v in variants)
        + " |",
        "| trial period in the sweep | " + " | ".join(f"{run.period_ms(v):.0f}" for v in variants) + " |",
        f"| bare `train(config)` (median of {len(run.bare_ms)}) | "
        + " | ".join(f"{bare:.0f}" for _ in variants)
        + " |",
        "| period - bare | " + " | ".join(f"{run.overhead_ms(v):.0f}" for v in variants) + " |",
        "| framework total / bare training | " + " | ".join(f"{framework[v] / bare:.1%}" for v in variants) + " |",
        "",
    ]
    main = variants[0]
    fraction = framework[main] / bare
    levers = (
        "Levers, before and after in this run: Hydra's `load_sweep_config` for one `techniques` trial "
        f"{run.compose_ms['hydra']:.0f} ms, our cached composition {run.compose_ms['cached']:.0f} ms"
    )
    if PER_EPOCH_WRITES in steps:
        levers += (
            f"; one MLflow `log_batch` per epoch: {steps[PER_EPOCH_WRITES].get('MLflow: metrics', 0):.0f} ms of "
            f"metrics per trial, against {steps[main].get('MLflow: metrics', 0):.0f} ms with `tracking.flush_seconds=2`"
        )
    lines += [
        f"Target (the plain sweep trial): <= {OVERHEAD_TARGET_FRACTION:.0%} of the training and below "
        f"{OVERHEAD_TARGET_MS} ms. Measured: {framework[main]:.0f} ms = {fraction:.1%}. "
        f"Below {OVERHEAD_TARGET_MS} ms: **{met(framework[main] < OVERHEAD_TARGET_MS)}**; "
        f"<= {OVERHEAD_TARGET_FRACTION:.0%}: **{met(fraction <= OVERHEAD_TARGET_FRACTION)}**.",
        "",
        levers + ".",
    ]
    return lines


def scaling_section(results: dict[int, SweepResult]) -> list[str]:
    one, two = results[1], results[2]
    ratio = two.per_hour(2) / one.per_hour(1)
    return [
        "## 4. Parallel scaling: one worker vs two",
        "",
        f"The `quick` study's trials ({one.trials} per run, random sampler with seed 0 and no pruner, so both",
        "runs train the same trials), `hydra.sweeper.n_jobs` 1 and 2 on this machine's cores (the sweeper",
        "gives each worker cores / n_jobs torch threads). Trials/hour is the steady state: the trials finished",
        "after each worker's first one, over the time since the last of those first trials ended.",
        "",
        "| workers | trials | first start to last end (s) | trials/hour | epochs/s (whole run) |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {n} | {r.trials} | {r.seconds:.1f} | {r.per_hour(n):,.0f} | {r.epochs / r.seconds:.1f} |"
            for n, r in sorted(results.items())
        ),
        "",
        f"Speed-up {ratio:.2f}x. Target >= {SCALING_TARGET}x. Met: **{met(ratio >= SCALING_TARGET)}**.",
    ]


def pruning_section(results: dict[str, list[SweepResult]]) -> list[str]:
    names = list(results)
    baseline = results[names[0]]
    lines = [
        "## 5. Pruning: epochs trained and best value reached",
        "",
        f"The `techniques` study as shipped (TPE, {baseline[0].trials} trials, one worker), once per",
        "pruner and sampler seed. Epochs are counted from each trial's MLflow curve, pruned and failed trials",
        f"included. The study's pruner is {study_pruner()}; Hyperband runs with",
        "min_resource 2 and reduction_factor 3.",
        "",
        "| pruner | seed | epochs trained | of no pruning | best val_loss | vs no pruning | states | target met |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name in names:
        for seed, (result, reference) in enumerate(zip(results[name], baseline, strict=True)):
            epochs = result.epochs / reference.epochs
            gap = (result.best - reference.best) / abs(reference.best) if result.best and reference.best else None
            ok = gap is not None and gap <= PRUNING_BEST_TOLERANCE and epochs <= PRUNING_EPOCH_FRACTION
            states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.states.items()))
            lines.append(
                f"| {name} | {seed} | {result.epochs} | {epochs:.0%} | {result.best:.3f} | "
                f"{'-' if gap is None else f'{gap:+.2%}'} | {states} | {'-' if name == names[0] else met(ok)} |"
            )
    lines += [
        "",
        f"Target: best within {PRUNING_BEST_TOLERANCE:.1%} of no pruning's, with <= {PRUNING_EPOCH_FRACTION:.0%} "
        "of its epochs.",
    ]
    return lines


def sampler_section(results: dict[str, list[SweepResult]]) -> list[str]:
    first = next(iter(results.values()))
    random = [r.best for r in results.get("random", [])]
    lines = [
        "## 6. Sampler efficiency",
        "",
        f"Best val_loss after {first[0].trials} trials of the `techniques` space (shortened epochs, no pruner,",
        "one worker), per sampler and seed (lower is better); the spread is the standard deviation over",
        "the seeds, and \"beats random\" counts the seeds where the sampler's best is below random search's",
        "with the same seed. The sweeper's default sampler is TPE with Optuna's defaults; the",
        "`techniques` study turns on multivariate TPE with grouping.",
        "",
        "| sampler | " + " | ".join(f"seed {s}" for s in range(len(first))) + " | mean | spread | beats random |",
        "|---|" + "---:|" * (len(first) + 3),
    ]
    for name, runs in results.items():
        bests = [r.best for r in runs if r.best is not None]
        spread = statistics.stdev(bests) if len(bests) > 1 else 0.0
        wins = sum(1 for r, other in zip(runs, random, strict=False) if None not in (r.best, other) and r.best < other)
        beats = "-" if name == "random" or not random else f"{wins} of {len(random)}"
        lines.append(
            f"| {name} | "
            + " | ".join("-" if r.best is None else f"{r.best:.3f}" for r in runs)
            + f" | {statistics.mean(bests):.3f} | {spread:.3f} | {beats} |"
        )
    return lines


def data_scaling_section(probes: list[EpochProbe]) -> list[str]:
    return [
        "## 7. Scale: time per epoch and memory as the data grows",
        "",
        "The default model (seed_mlp) trained 2 epochs, each size in a fresh process (peak RSS is that",
        "process's). Linear scaling shows as a constant time per training row.",
        "",
        "| data | training rows | s/epoch | us per row | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {p.label} | {p.train_rows:,} | {p.seconds_per_epoch:.2f} | {p.us_per_row:.1f} | {p.peak_rss_mb:,.0f} |"
            for p in probes
        ),
    ]


def long_sweep_section(rss: list[float]) -> list[str]:
    half = len(rss) // 2
    growth = (rss[-1] - rss[half - 1]) / max(1, len(rss) - half)
    marks = sorted({1, min(10, len(rss)), max(1, half), len(rss)})
    return [
        "",
        f"Memory over a long sweep: {len(rss)} tiny trials in one worker process (MLflow on), RSS after each trial.",
        "",
        "| " + " | ".join(f"after trial {n}" for n in marks) + " | growth per trial, second half |",
        "|" + "---:|" * (len(marks) + 1),
        "| " + " | ".join(f"{rss[n - 1]:.0f} MiB" for n in marks) + f" | {growth * 1024:.1f} KiB |",
    ]


def versus_script_section(run: VersusScript) -> list[str]:
    one = {name: VersusScript.median(runs) for name, runs in run.one_trial.items()}
    wall = {name: VersusScript.median(runs) for name, runs in run.sweep.items()}
    beyond = {name: VersusScript.median(runs, beyond=True) for name, runs in run.sweep.items()}
    per_trial = {name: VersusScript.median_trial_ms(runs) for name, runs in run.sweep.items()}
    rerun = statistics.median(run.rerun_s)
    one_ratio, beyond_ratio = one["ours"] / one["script"], beyond["ours"] / beyond["script"]
    rerun_ratio = rerun / one["ours"]
    size = f"{run.trials} x {run.epochs}"
    return [
        "## 8. Whole sweeps vs the hand-written script",
        "",
        "`vae-train -m study=quick hydra.sweeper.pruner.name=none` against",
        "[`vae_sweep/bench/handwritten.py`](../vae_sweep/bench/handwritten.py), the plain Optuna (`study.optimize`,",
        "SQLite) + MLflow (SQLite, `start_run(nested=True)`, per-epoch metrics) script a user would write instead:",
        "the same space, model and data. Each is a whole process from the prompt back to it, in a fresh folder",
        f"with new stores, the two sides interleaved; medians of {len(run.rerun_s)} repeat(s). Beyond training is",
        "the wall time less the trials' `train_seconds` (both log it the same way).",
        "",
        "| | ours | script | ours / script | target | met |",
        "|---|---:|---:|---:|---:|---|",
        f"| 1-trial, 1-epoch sweep: wall (s) | {one['ours']:.2f} | {one['script']:.2f} | {one_ratio:.2f} | "
        f"<= {VERSUS_SCRIPT_TARGET:.2f} | **{met(one_ratio <= VERSUS_SCRIPT_TARGET)}** |",
        f"| {size} sweep: wall beyond training (s) | {beyond['ours']:.2f} | {beyond['script']:.2f} | "
        f"{beyond_ratio:.2f} | <= {VERSUS_SCRIPT_TARGET:.2f} | **{met(beyond_ratio <= VERSUS_SCRIPT_TARGET)}** |",
        f"| {size} sweep: wall (s) | {wall['ours']:.2f} | {wall['script']:.2f} | "
        f"{wall['ours'] / wall['script']:.2f} | - | - |",
        f"| {size} sweep: a warm trial's bookkeeping (ms) | {per_trial['ours']:.0f} | "
        f"{per_trial['script']:.0f} | {per_trial['ours'] / per_trial['script']:.2f} | - | - |",
        "",
        "A warm trial is one from the second to the last but one. Its bookkeeping is the time from the",
        "start of its MLflow run to the next one's, less its `train_seconds`, plus, for the script, the",
        "part of `train_seconds` its per-epoch `log_metric` calls took (it logs that as `log_seconds`;",
        "ours only queue the epoch's metrics there, and send them after).",
        "",
        f"Rerun of the finished 1-trial study (the same command again): {rerun:.2f} s = {rerun_ratio:.2f} of the",
        f"1-trial sweep (target < {RERUN_TARGET:.2f}), "
        + ("a new sweep folder written (target: none)" if run.rerun_made_folder else "no new sweep folder")
        + f". Met: **{met(rerun_ratio < RERUN_TARGET and not run.rerun_made_folder)}**.",
        "",
        "Where each side's start-up, trials and end go, profiled step by step: [performance-history.md]"
        "(performance-history.md#issue-16-the-third-round-kernels-and-the-garbage-collector-2026-12-04).",
    ]


def conv_rows(results: Results) -> list[str]:
    """Row 1's table again for ``model=conv`` against the same layers written as usual."""
    run = results.conv
    if run is None:
        return []
    ours, plain = run.summary(run.ours), run.summary(run.plain)
    ratio = {stat: ours[stat] / plain[stat] for stat in ("min", "median")}
    return [
        "",
        "**`model=conv`** (two stride-2 4x4 convolutions of 32 and 64 channels, a 32-d latent, the mirror image",
        f"in transposed convolutions) on {run.n_train} synthetic 28x28 images, {run.epochs} epoch(s), "
        f"{len(run.ours)} interleaved repeat(s), against `ExampleConvVAE`",
        "([baseline.py](../vae_sweep/bench/baseline.py)), the same layers written the usual way, in the same loop:",
        "",
        "| | samples/s (min) | samples/s (median) |",
        "|---|---:|---:|",
        f"| ours, `model=conv` | {ours['min']:,.0f} | {ours['median']:,.0f} |",
        f"| plain loop, `ExampleConvVAE` | {plain['min']:,.0f} | {plain['median']:,.0f} |",
        f"| **ratio ours / plain** | {ratio['min']:.2f} | **{ratio['median']:.2f}** |",
        "",
        f"Target: ratio >= {THROUGHPUT_TARGET:.2f}. Met: **{verdict(ratio['median'], THROUGHPUT_TARGET)}**.",
    ]
