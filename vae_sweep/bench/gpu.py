"""Row 9: rows 1-2 again on the machine's GPU, when it has one: our trainer against the plain loop
on the MLP and the conv model, and the achieved GFLOP/s against the GPU's own matmul peak.

Without a GPU the row says so, with the date; ``.ci/gpu-check`` (run where a GPU machine is
lent) covers more (precisions, ``torch.compile``, a 2-worker sweep) in performance-history.md.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import torch

from vae_sweep.bench.flops import cuda_matmul_peak_gflops
from vae_sweep.bench.targets import PEAK_FRACTION_TARGET, THROUGHPUT_TARGET, verdict
from vae_sweep.bench.trainer import CONV_MODEL, MODEL, ThroughputRun, measure_throughput

FULL_GPU = (60_000, 3, 3)  # training samples, epochs, repeats
QUICK_GPU = (2_000, 1, 1)


@dataclass
class GpuRun:
    date: str
    device: str | None  # the GPU's name; None: this machine has none
    peak_gflops: float = 0.0
    runs: dict[str, ThroughputRun] | None = None  # by model


def measure_gpu(quick: bool) -> GpuRun:
    today = datetime.date.today().isoformat()
    if not torch.cuda.is_available():
        return GpuRun(today, None)
    n_train, epochs, repeats = QUICK_GPU if quick else FULL_GPU
    runs = {
        model: measure_throughput(
            n_train=n_train, epochs=epochs, threads=1, repeats=repeats, model=model, device="cuda"
        )[0]
        for model in (MODEL, CONV_MODEL)
    }
    return GpuRun(today, torch.cuda.get_device_name(), cuda_matmul_peak_gflops(), runs)


def gpu_section(run: GpuRun, flops_per_sample: dict[str, int]) -> list[str]:
    lines = ["## 9. GPU: trainer vs plain loop, and GFLOP/s vs the GPU's matmul peak", ""]
    if run.device is None or not run.runs:
        return [
            *lines,
            f"Not measured: the machine that ran this benchmark on {run.date} has no GPU. Run on a GPU machine,",
            "the same command fills this row; `.ci/gpu-check` measures more there, dated in",
            "[performance-history.md](performance-history.md#gpu-check).",
        ]
    lines += [
        f"{run.device}, {run.date}; peak: best float32 `torch.mm` of 8192^3, **{run.peak_gflops:,.0f} GFLOP/s**.",
        "",
        "| model | ours samples/s | plain samples/s | ours / plain | met (>= 1.05) | ours GFLOP/s | of peak | met |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for model, result in run.runs.items():
        ours, plain = (result.summary(side)["median"] for side in (result.ours, result.plain))
        achieved = flops_per_sample[model] * ours / 1e9
        fraction = achieved / run.peak_gflops
        lines.append(
            f"| {model} | {ours:,.0f} | {plain:,.0f} | {ours / plain:.2f} | {verdict(ours / plain, THROUGHPUT_TARGET)} "
            f"| {achieved:,.1f} | {fraction:.0%} | {verdict(fraction, PEAK_FRACTION_TARGET)} |"
        )
    return lines
