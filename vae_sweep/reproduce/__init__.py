"""vae-reproduce: re-run a logged run from its config.yaml and compare metrics and weights.

``main`` is the command line (``vae_sweep.cli.reproduce`` turns its errors into exit codes);
the other names are the pieces tests check on their own.
"""

from __future__ import annotations

from vae_sweep.reproduce.cli import main
from vae_sweep.reproduce.diff import MetricDiff, compare_weights, verdict
from vae_sweep.reproduce.find import number_ranges
from vae_sweep.reproduce.logged import literal

__all__ = ["MetricDiff", "compare_weights", "literal", "main", "number_ranges", "verdict"]
