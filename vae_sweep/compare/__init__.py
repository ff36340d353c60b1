"""vae-compare: techniques side by side across finished studies, read from MLflow and Optuna.

One job a module: ``tables`` (pure functions on the runs' DataFrame), ``basis`` (which value of
each run is compared: completed runs, or every run at one epoch), ``units`` (a metric's unit and
direction, for every label), ``sources`` (reading MLflow runs and Optuna studies), ``report``
(rendering and writing the report), ``terminal`` (tables that fit 100 columns), ``plots``
(matplotlib figures, imported only when drawing) and ``cli`` (the argparse command, ``main``).
Names here are loaded from their module when first used (PEP 562): ``vae-compare --help``
imports neither MLflow nor matplotlib.
"""

from __future__ import annotations

from vae_sweep.lazy_exports import lazy_getattr

_EXPORTS = {
    "Basis": "vae_sweep.compare.basis",
    "comparison": "vae_sweep.compare.cli",
    "main": "vae_sweep.compare.cli",
    "curve_band": "vae_sweep.compare.plots",
    "draw": "vae_sweep.compare.plots",
    "render": "vae_sweep.compare.report",
    "completed_values": "vae_sweep.compare.tables",
    "group_labels": "vae_sweep.compare.tables",
    "pareto_front": "vae_sweep.compare.tables",
    "technique_table": "vae_sweep.compare.tables",
    "trial_states": "vae_sweep.compare.tables",
    "fit_table": "vae_sweep.compare.terminal",
    "label": "vae_sweep.compare.units",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
