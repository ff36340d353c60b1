"""The benchmark's targets (issue 16's numbers), and how a row says whether it met one."""

from __future__ import annotations

THROUGHPUT_TARGET = 1.05  # ours / plain samples per second
PEAK_FRACTION_TARGET = 0.45  # achieved training GFLOP/s / sgemm GFLOP/s
OVERHEAD_TARGET_FRACTION = 0.05  # per-trial framework time / bare training time
OVERHEAD_TARGET_MS = 130
SCALING_TARGET = 1.8  # trials/hour with two workers / with one
PRUNING_BEST_TOLERANCE = 0.005  # best value with pruning within 0.5% of the best without
PRUNING_EPOCH_FRACTION = 0.5  # ... having trained at most half the epochs
VERSUS_SCRIPT_TARGET = 1.0  # ours / the hand-written script: wall time of a 1-trial sweep, and beyond training
RERUN_TARGET = 1 / 3  # a finished study's rerun / a 1-trial sweep


def verdict(value: float, target: float) -> str:
    return "yes" if value >= target else "no"


def met(condition: bool) -> str:
    return "yes" if condition else "no"
