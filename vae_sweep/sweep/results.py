"""What a sweep leaves behind: ``optimization_results.yaml`` (its plots: ``plots``)."""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

import optuna
import yaml

from vae_sweep.names import RUN_ID_ATTR
from vae_sweep.sweep.plan import SweepPlan
from vae_sweep.sweep.progress import StudyProgress


def single_run_command(plan: SweepPlan, trial: optuna.trial.FrozenTrial) -> str:
    """A single run of the app (``vae-train``, ``python sphere.py``) with the trial's overrides:
    no sweep, same config. A fixed value given on the command line is both a base override and
    one of the space's; it is written once."""
    values = {name: trial.params[name] for name in plan.space.params if name in trial.params}
    searchpath = [f"hydra.searchpath=[{','.join(plan.searchpath)}]"] if plan.searchpath else []
    overrides = dict.fromkeys([*plan.base_overrides, *plan.space.overrides(values)])
    return " ".join([plan.app.command, shlex.join([*searchpath, *overrides])]).strip()


def summarize(study: optuna.Study, plan: SweepPlan) -> dict[str, Any]:
    progress = StudyProgress.read(study)  # one read of the trials for the counts and the best
    counts: dict[str, int] = {}
    for trial in progress.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    summary: dict[str, Any] = {
        "name": study.study_name,
        "direction": [d.name.lower() for d in progress.directions],
        "trials": counts,
    }
    if not counts.get("COMPLETE"):
        return summary
    if len(progress.directions) == 1:
        best = progress.best()
        if best is None:  # every complete trial broke a constraint (hydra.sweeper.min_active_units)
            summary["feasible"] = 0
            return summary
        summary.update(
            best_value=float(best.value),
            best_params=dict(best.params),
            best_trial=best.number,
            best_run_id=best.user_attrs.get(RUN_ID_ATTR),
            reproduce=single_run_command(plan, best),
        )
    else:
        summary["best_trials"] = [
            {
                "trial": trial.number,
                "values": [float(v) for v in trial.values],
                "params": dict(trial.params),
                "run_id": trial.user_attrs.get(RUN_ID_ATTR),
                "reproduce": single_run_command(plan, trial),
            }
            for trial in study.best_trials
        ]
    return summary


def write_results(summary: dict[str, Any], folder: Path) -> Path:
    """``optimization_results.yaml``; no line folded (YAML's writer folds at 80 columns, and a
    ``reproduce`` command pasted from a folded line runs a different training)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "optimization_results.yaml"
    path.write_text(yaml.safe_dump(summary, sort_keys=False, width=math.inf))
    return path
