"""Comparing a reproduction with its original: final metrics side by side, weights bit for bit,
and the verdict that gives ``vae-reproduce`` its exit code.

Timing metrics (wall-clock) are shown but never part of the verdict; everything else must be
bit-identical, or within a relative ``--tolerance``. Also the report's pieces that compare: the
metrics table and the package versions or git commit that changed since the original ran.

Example:
    >>> [d.verdict_part for d in compare_metrics({"test_loss": 1.0, "train_seconds": 2.0},
    ...                                          {"test_loss": 1.0, "train_seconds": 3.0})]
    [True, False]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from tabulate import tabulate

from vae_sweep.names import FINAL_METRICS

TIMING_METRICS = ("samples_per_sec", "train_seconds")  # wall-clock: shown, never part of the verdict


@dataclass(frozen=True)
class MetricDiff:
    name: str
    original: float
    reproduced: float

    @property
    def verdict_part(self) -> bool:
        return self.name not in TIMING_METRICS

    @property
    def identical(self) -> bool:
        both_nan = math.isnan(self.original) and math.isnan(self.reproduced)
        return both_nan or self.original == self.reproduced

    @property
    def abs_diff(self) -> float:
        return 0.0 if self.identical else abs(self.reproduced - self.original)

    @property
    def rel_diff(self) -> float:
        if self.identical:
            return 0.0
        return self.abs_diff / abs(self.original) if self.original != 0 else math.inf


def compare_metrics(original: Mapping[str, float], reproduced: Mapping[str, float]) -> list[MetricDiff]:
    """One row per final metric that both runs have, in ``FINAL_METRICS`` order."""
    return [
        MetricDiff(name, float(original[name]), float(reproduced[name]))
        for name in FINAL_METRICS
        if name in original and name in reproduced
    ]


@dataclass(frozen=True)
class WeightsDiff:
    tensors: int
    different: tuple[str, ...]  # names of tensors that differ in any bit, shape, dtype or presence
    max_rel_diff: float  # max |a - b| / max |a| over the differing tensors (inf for a structural mismatch)

    @property
    def equal(self) -> bool:
        return not self.different


def compare_weights(original: Mapping[str, torch.Tensor], reproduced: Mapping[str, torch.Tensor]) -> WeightsDiff:
    """Bitwise comparison of two state_dicts, with the largest relative difference."""
    different, worst = [], 0.0
    for name in sorted(set(original) | set(reproduced)):
        a, b = original.get(name), reproduced.get(name)
        if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
            different.append(name)
            worst = math.inf
            continue
        a, b = a.detach().cpu().contiguous(), b.detach().cpu().contiguous()
        if torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)):
            continue
        different.append(name)
        a64, b64 = a.double(), b.double()
        scale = a64.abs().max().item() if a64.numel() else 0.0
        gap = (a64 - b64).abs().nan_to_num(nan=math.inf).max().item()
        worst = max(worst, 0.0 if gap == 0 else gap / scale if scale > 0 else math.inf)  # gap 0: -0.0 vs 0.0
    return WeightsDiff(len(set(original) | set(reproduced)), tuple(different), worst)


@dataclass(frozen=True)
class Verdict:
    label: str  # identical, within_tolerance or different: the new run's reproduce.verdict tag
    text: str

    @property
    def identical(self) -> bool:
        return self.label == "identical"

    @property
    def within_tolerance(self) -> bool:
        return self.label in ("identical", "within_tolerance")

    @property
    def exit_code(self) -> int:
        return 0 if self.within_tolerance or self.label == "recovered" else 1


def verdict(
    metrics: Sequence[MetricDiff], weights: WeightsDiff | None, tolerance: float, unreadable: str | None = None
) -> Verdict:
    """Identical when every non-timing metric and every weight is bit-for-bit the same; else the
    largest relative difference against ``tolerance``. Weights that were logged but cannot be
    read (``unreadable`` says why) leave the reproduction unverified, whatever the metrics say."""
    if unreadable is not None:
        return Verdict("unverified", f"NOT VERIFIED: the weights could not be compared ({unreadable})")
    judged = [m for m in metrics if m.verdict_part]
    gaps = [(m.rel_diff, m.name) for m in judged if not m.identical]
    if weights is not None and not weights.equal:
        gaps.append((weights.max_rel_diff, "weights"))
    if not gaps:
        what = "every final metric" + (" and every weight" if weights is not None else "")
        return Verdict("identical", f"identical ({what} bit for bit)")
    gap, where = max(gaps)
    if gap <= tolerance:
        return Verdict(
            "within_tolerance", f"within tolerance (largest relative difference {gap:.3g} in {where} <= {tolerance:g})"
        )
    return Verdict(
        "different", f"DIFFERENT (largest relative difference {gap:.3g} in {where} > --tolerance {tolerance:g})"
    )


def metrics_table(rows: Sequence[MetricDiff]) -> str:
    def number(value: float) -> str:
        return f"{value:.10g}"

    table = [
        [
            row.name + ("" if row.verdict_part else " *"),
            number(row.original),
            number(row.reproduced),
            "0" if row.identical else f"{row.abs_diff:.3g}",
            "0" if row.identical else f"{row.rel_diff:.3g}",
        ]
        for row in rows
    ]
    headers = ["metric", "original", "reproduced", "abs diff", "rel diff"]
    return tabulate(table, headers, disable_numparse=True, colalign=("left", "right", "right", "right", "right"))


def environment_changes(original_tags: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """``torch 2.12.0 -> 2.13.0``-style lines for every package version or commit that changed."""
    keys = [k for k in sorted(set(original_tags) | set(current)) if k.startswith("version.")]
    keys.append("mlflow.source.git.commit")
    changes = []
    for key in keys:
        before, now = original_tags.get(key, "?"), current.get(key, "?")
        if before != now:
            changes.append(f"{key.removeprefix('version.').replace('mlflow.source.git.', 'git ')} {before} -> {now}")
    return changes
