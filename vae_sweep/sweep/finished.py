"""A rerun of a study that is already done: its answer in about a second, and no new sweep.

Running a finished sweep's command again is common (a script run twice, the shell's history, a
pipeline that makes sure). Set up in full, it would compose every choice's config, open the
MLflow store, import torch, launch a worker that finds nothing to claim and write a new
``multirun/`` folder with the same results: tens of seconds for nothing. So the sweep's report
is recorded in the study, with what it answered, once it is complete (results, plots and the
MLflow runs all closed), and a rerun of the same request finds it there first. It is used only
while it still holds: the budget asked for is within the study's, no trial waits or runs, no
trial was added since, and the request is the same one (the sweeper's settings but the budget,
``n_jobs`` and ``quiet``; the command line's overrides; the config search path). Anything else,
or a store that cannot be read this way, takes the full path, which says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.storages import RDBStorage
from optuna.trial import TrialState

from vae_sweep.local_stores import sqlite_file
from vae_sweep.names import BUDGET_ATTR

REPORT_ATTR = "vae_sweep.report"  # study user attribute: the last complete report and what it answered
# Settings that change neither the trials nor the report: the budget is compared on its own.
NOT_IN_REQUEST = frozenset({"n_trials", "n_jobs", "quiet"})


def request_key(settings: Mapping[str, Any], overrides: Sequence[str], searchpath: Sequence[str]) -> str:
    """A digest of what a sweep asks the study for, the same for the same command."""
    asked = {
        "settings": {key: value for key, value in settings.items() if key not in NOT_IN_REQUEST},
        "overrides": sorted(overrides),
        "searchpath": list(searchpath),
    }
    return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()


def report_record(key: str, n_trials: int, lines: Sequence[str]) -> dict[str, Any]:
    """What a complete report leaves in the study: the request it answered, the trials it
    counted and its lines after the first (the best trial, where the results are)."""
    return {"request": key, "trials": n_trials, "lines": list(lines)}


def done_message(storage_url: str, study_name: str, key: str, n_trials: int) -> str | None:
    """The answer to a rerun of a done study: its report again and how to grow it; None when
    the study is not done, the request differs, or the store cannot tell (the full path decides)."""
    path = sqlite_file(storage_url)
    if path is not None and not path.is_file():  # a new study: nothing to read, nothing to create here
        return None
    try:
        storage = RDBStorage(storage_url, skip_compatibility_check=True, skip_table_creation=True)
        try:
            study_id = storage.get_study_id_from_name(study_name)
            attrs = storage.get_study_user_attrs(study_id)
            trials = storage.get_all_trials(study_id, deepcopy=False)
        finally:
            storage.engine.dispose()
    except Exception:  # no such study, an older schema, a server that does not answer: the full path says so
        return None
    record = attrs.get(REPORT_ATTR) or {}
    budget = int(attrs.get(BUDGET_ATTR) or 0)
    states = [trial.state for trial in trials]
    if (
        record.get("request") != key
        or record.get("trials") != len(trials)
        or n_trials > budget
        or any(state in (TrialState.WAITING, TrialState.RUNNING) for state in states)
    ):
        return None
    counts = ", ".join(f"{states.count(state)} {state.name}" for state in TrialState if state in states)
    return "\n".join(
        [
            f"Study {study_name!r} is done: {len(trials)} trials ({counts}) for its budget of {budget}; "
            "nothing to run, no new sweep folder",
            *record["lines"],
            f"To grow it: the same command with hydra.sweeper.n_trials={budget + 10} (or any number above {budget}); "
            "a new study: hydra.sweeper.fresh=true",
        ]
    )
