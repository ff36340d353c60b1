"""vae-compare: techniques side by side across finished studies, read from MLflow and Optuna.

One job a module: ``tables`` (pure functions on the runs' DataFrame), ``sources`` (reading
MLflow runs and Optuna studies), ``report`` (rendering and writing the report), ``plots``
(matplotlib figures, imported only when drawing) and ``cli`` (the argparse command, ``main``).
"""

from __future__ import annotations

from vae_sweep.compare.cli import main
from vae_sweep.compare.tables import group_labels, pareto_front, technique_table, trial_states

__all__ = ["group_labels", "main", "pareto_front", "technique_table", "trial_states"]
