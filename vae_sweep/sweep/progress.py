"""How far a study is, in one line: trials done of all, running, and when it will end.

Read from the study's storage, so any process can say it: a worker after each trial, the sweep's
own process every ``STATUS_INTERVAL_S`` while its workers run (the only progress a user sees
when the launcher keeps the workers' output in files, as submitit and Ray do).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

STATUS_INTERVAL_S = 30.0
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class StudyProgress:
    """A study's trials, read once when a trial ends: its progress line, the best so far and
    the parent run's counts all come from this one read. (``study.best_trial``, ``best_value``
    and ``get_trials`` each read the storage again, every trial of a large study each time.)"""

    study: optuna.Study
    directions: tuple[StudyDirection, ...]
    trials: Sequence[FrozenTrial]

    @classmethod
    def read(cls, study: optuna.Study) -> StudyProgress:
        return cls(study, tuple(study.directions), study.get_trials(deepcopy=False))

    def counts(self) -> dict[str, int]:
        """Finished trials by state, zeros included."""
        states = Counter(t.state for t in self.trials)
        return {state.name: states[state] for state in FINISHED}

    def best(self) -> FrozenTrial | None:
        """The best feasible complete trial of a single-objective study (the first of equals), as
        Optuna's ``best_trial`` picks it; None when there is none."""
        complete = [t for t in self.trials if t.state is TrialState.COMPLETE and feasible(t)]
        if not complete or len(self.directions) > 1:
            return None
        pick = max if self.directions[0] is StudyDirection.MAXIMIZE else min
        return pick(complete, key=lambda trial: trial.value)

    def best_line(self) -> str:
        """``24.5512 (trial 7)``, ``3 on the Pareto front`` or ``-``."""
        if len(self.directions) > 1:
            pareto = self.study.best_trials if self.counts()["COMPLETE"] else []
            return f"{len(pareto)} on the Pareto front" if pareto else "-"
        best = self.best()
        return f"{best.value:.4f} (trial {best.number})" if best else "-"


def feasible(trial: FrozenTrial) -> bool:
    """Whether the trial meets its constraints (``trial.set_constraint``: each value <= 0)."""
    return all(value <= 0 for value in trial.constraints.values())


def duration_s(trial: FrozenTrial) -> float | None:
    """How long a finished trial ran, from its claim to its end."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def eta_s(trials: Sequence[FrozenTrial], parallel: int) -> float | None:
    """Seconds until the trials not yet finished are, ``parallel`` at a time, at the median
    duration of those finished so far; None before any finished, 0 when none is left."""
    left = sum(1 for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING))
    durations = [d for d in map(duration_s, trials) if d is not None]
    if not left:
        return 0.0
    if not durations:
        return None
    return statistics.median(durations) * left / max(1, parallel)


def progress_line(trials: Sequence[FrozenTrial], *, also_working: int = 0) -> str:
    """``12/30 done (8 COMPLETE, 3 PRUNED, 1 FAIL), 2 running, ETA 1m05s``; the ETA counts the
    trials running and ``also_working`` workers between two trials (one that just finished)."""
    states = Counter(t.state for t in trials)
    finished = [(state, n) for state in FINISHED if (n := states[state])]
    line = f"{sum(n for _, n in finished)}/{len(trials)} done"
    if finished:
        line += f" ({', '.join(f'{n} {state.name}' for state, n in finished)})"
    if states[TrialState.RUNNING]:
        line += f", {states[TrialState.RUNNING]} running"
    eta = eta_s(trials, states[TrialState.RUNNING] + also_working)
    if eta is not None and eta >= 1:
        line += f", ETA {format_duration(eta)}"
    return line


def format_duration(seconds: float) -> str:
    """``2.6s``, ``42s``, ``3m05s``, ``2h07m``.

    >>> format_duration(2.61), format_duration(42.4), format_duration(185), format_duration(7650)
    ('2.6s', '42s', '3m05s', '2h07m')
    """
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
