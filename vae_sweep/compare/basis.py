"""Which value of each run a comparison ranks, and the sentence that says so in every report.

A study mixes runs that trained for different lengths: pruned runs stop at epoch 2 or 5,
completed ones go to the last epoch. Their last logged ``val_loss`` values are not comparable
(more epochs, lower loss), so a median over both says more about pruning than about the
technique. Two honest bases:

- ``completed`` (the default): only completed runs' values are compared; pruned and failed runs
  are still counted per option, they just do not enter best / median / mean / std.
- ``--at-epoch N``: every run's value at epoch N, read from its metric history (step = epoch),
  so runs pruned after N count too; runs that stopped before N are counted, not compared.

Example:
    >>> Basis("val_loss", min_runs=3).describe()  # doctest: +NORMALIZE_WHITESPACE
    'Compared: completed runs only; pruned and failed runs are counted but their val_loss (logged at
    the epoch they stopped) is not in n, best, median, mean or std. ★ = the best median among
    options with n >= 3; thin = fewer runs, cannot win (--min-runs).'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from vae_sweep.compare.tables import MIN_RUNS, completed_values
from vae_sweep.names import EPOCH_METRICS


@dataclass(frozen=True)
class Basis:
    """What ``vae-compare`` ranks: ``metric`` of completed runs, or (``at_epoch``) of every run at
    that epoch; ``min_runs`` compared runs an option needs to win.

    Args:
        metric: the metric ranked (``--metric``).
        at_epoch: ``--at-epoch``: compare every run's value at this epoch; only per-epoch metrics
            (``vae_sweep.names.EPOCH_METRICS``) have one.
        min_runs: ``--min-runs``: options with fewer compared runs are thin and cannot win.
    """

    metric: str
    at_epoch: int | None = None
    min_runs: int = MIN_RUNS

    def __post_init__(self) -> None:
        if self.min_runs < 1:
            raise ValueError(f"--min-runs must be at least 1, got {self.min_runs}")
        if self.at_epoch is not None and self.at_epoch < 1:
            raise ValueError(f"--at-epoch must be at least 1 (epochs count from 1), got {self.at_epoch}")
        if self.at_epoch is not None and self.metric not in EPOCH_METRICS:
            raise ValueError(
                f"--at-epoch needs a per-epoch metric ({', '.join(EPOCH_METRICS)}); "
                f"{self.metric} is logged once at the end of a run"
            )

    @property
    def name(self) -> str:
        """``completed`` or ``epoch N``: the basis in one word, for JSON and column headers."""
        return "completed" if self.at_epoch is None else f"epoch {self.at_epoch}"

    def describe(self) -> str:
        """The note every report format carries: which runs' values are compared, and who may win."""
        if self.at_epoch is None:
            what = (
                f"Compared: completed runs only; pruned and failed runs are counted but their {self.metric} "
                "(logged at the epoch they stopped) is not in n, best, median, mean or std."
            )
        else:
            what = (
                f"Compared: every run's {self.metric} at epoch {self.at_epoch} (from its metric history), "
                f"completed or pruned later; runs that stopped before epoch {self.at_epoch} are counted, not in n."
            )
        return (
            f"{what} ★ = the best median among options with n >= {self.min_runs}; "
            "thin = fewer runs, cannot win (--min-runs)."
        )

    def values(self, runs: pd.DataFrame, histories: Mapping[str, pd.DataFrame] | None = None) -> pd.Series:
        """The compared value per run (NaN: counted, not compared); ``histories`` (run id ->
        ``step``, ``value``, as ``sources.load_curves`` reads them) is needed with ``at_epoch``."""
        if self.at_epoch is None:
            return completed_values(runs, self.metric)
        if histories is None:
            raise ValueError("at_epoch needs the runs' metric histories")
        return values_at_epoch(runs, histories, self.at_epoch)


def values_at_epoch(runs: pd.DataFrame, histories: Mapping[str, pd.DataFrame], epoch: int) -> pd.Series:
    """Each run's logged value at step ``epoch`` (the last one if logged twice); NaN for a run
    that has no such step (stopped earlier, or evaluated only every few epochs) or a non-finite one."""
    values = []
    for run_id in runs["run_id"]:
        history = histories.get(run_id)
        at = history[history["step"] == epoch] if history is not None else None
        value = float(at["value"].iloc[-1]) if at is not None and len(at) else math.nan
        values.append(value if math.isfinite(value) else math.nan)
    return pd.Series(values, index=runs.index, dtype=float)
