"""Retrying a trial that did not end on its own: its worker died, or the user interrupted it.

Like Optuna's ``RetryHeartbeatStaleTrialCallback`` (its ``failed_trial`` and ``retry_history``
attributes are kept, so Optuna's helpers read our retries), with two differences:
- a retry starts with clean bookkeeping: no user attributes of the failed trial (its failure
  reason, its MLflow run id) travel with it;
- only crashes spend ``max_retry``: an interrupt is the user's choice, and a full disk the
  machine's; their retries are always queued, so Ctrl-C never costs a trial.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from vae_sweep.names import (
    CRASH_RETRIES_ATTR,
    DISK_FULL,
    FAILURE_REASON_ATTR,
    INTERRUPTED,
    REPLICATE_ATTR,
    RETRY_HISTORY_ATTR,
    RETRY_OF_ATTR,
)


class RetryTrial:
    """A heartbeat-stale-trial callback for Optuna's RDB storage, also called for interrupts."""

    def __init__(self, max_retry: int | None) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get(RETRY_HISTORY_ATTR, []), trial.number]
        crashes = int(trial.system_attrs.get(CRASH_RETRIES_ATTR, 0))
        if trial.user_attrs.get(FAILURE_REASON_ATTR) not in (INTERRUPTED, DISK_FULL):
            crashes += 1
            if self.max_retry is not None and crashes > self.max_retry:
                return
        system_attrs = {RETRY_OF_ATTR: history[0], RETRY_HISTORY_ATTR: history, CRASH_RETRIES_ATTR: crashes}
        if REPLICATE_ATTR in trial.system_attrs:  # what a replicate repeats is part of what it is
            system_attrs[REPLICATE_ATTR] = trial.system_attrs[REPLICATE_ATTR]
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs=system_attrs,
            )
        )


def previous_attempts(trial: FrozenTrial) -> list[int]:
    """The numbers of the trials this one retries, newest first (empty for an original trial)."""
    return list(reversed(trial.system_attrs.get(RETRY_HISTORY_ATTR, [])))
