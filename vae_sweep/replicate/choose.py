"""Which configurations of a study to replicate, and with which seeds (pure: no store is opened).

A technique's verdict compares its options, so every option needs replicated configurations,
not only the options TPE liked: the best ``top`` complete trials of each option of each
technique (by the study's objective, feasible trials only; pruned trials, by their last reported
value, fill up an option with fewer), and the best ``top`` complete trials overall. The options
are those ``vae-compare`` groups by: the runs' ``technique.*`` tags, or ``--by`` keys.

Example:
    >>> import pandas as pd
    >>> from optuna.trial import create_trial
    >>> trials = [create_trial(value=v) for v in (3.0, 1.0, 2.0, 5.0)]
    >>> for number, trial in enumerate(trials):
    ...     trial.number = number
    >>> runs = pd.DataFrame({"tags.optuna.trial_number": ["0", "1", "2", "3"],
    ...                      "tags.technique.optimizer": ["sgd", "adam", "adam", "sgd"]})
    >>> [(c.number, c.reasons) for c in choose(trials, runs, {"optimizer": "tags.technique.optimizer"}, top=1)]
    [(1, ['top 1 overall', 'top 1 of optimizer=adam']), (0, ['top 1 of optimizer=sgd'])]
    >>> fresh_seeds(3, used={0, 2})
    [1, 3, 4]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from vae_sweep.compare.tables import TRIAL_TAG
from vae_sweep.sweep.progress import feasible


@dataclass
class Chosen:
    trial: FrozenTrial
    reasons: list[str] = field(default_factory=list)  # "top 2 of optimizer=adam", ...

    @property
    def number(self) -> int:
        return self.trial.number


def choose(
    trials: Sequence[FrozenTrial], runs: pd.DataFrame, keys: Mapping[str, str], *, top: int, maximize: bool = False
) -> list[Chosen]:
    """The trials to replicate, best overall first, each with why it was chosen. ``runs`` are the
    study's trial runs (a ``TRIAL_TAG`` column and the ``keys`` columns: technique -> column)."""
    sign = -1.0 if maximize else 1.0
    complete = [t for t in trials if t.state is TrialState.COMPLETE and t.value is not None and feasible(t)]
    pruned = [t for t in trials if t.state is TrialState.PRUNED and t.intermediate_values]
    ranked = sorted(complete, key=lambda t: (sign * t.value, t.number))
    # An option the pruner cut short everywhere still gets replicated configurations: its pruned
    # trials, after every complete one, by the last value they reported.
    ranked += sorted(pruned, key=lambda t: (sign * t.intermediate_values[max(t.intermediate_values)], t.number))
    chosen: dict[int, Chosen] = {}

    def take(group: Sequence[FrozenTrial], why: str) -> None:
        for rank, trial in enumerate(group[:top], start=1):
            pruned_at = (
                f" (pruned at epoch {max(trial.intermediate_values)})" if trial.state is TrialState.PRUNED else ""
            )
            chosen.setdefault(trial.number, Chosen(trial)).reasons.append(f"top {rank} {why}{pruned_at}")

    take(ranked[: len(complete)], "overall")
    options = runs.drop_duplicates(TRIAL_TAG, keep="last").set_index(TRIAL_TAG) if len(runs) else runs
    for name, column in keys.items():
        option_of = {t.number: options[column].get(str(t.number)) for t in ranked} if column in options else {}
        for option in sorted({str(v) for v in option_of.values() if pd.notna(v)}):
            take([t for t in ranked if str(option_of[t.number]) == option], f"of {name}={option}")
    return list(chosen.values())


def fresh_seeds(count: int, *, used: Collection[int]) -> list[int]:
    """The ``count`` smallest seeds >= 0 that no searched trial used: replicates measure what
    another seed gives, so none repeats its search run."""
    seeds: list[int] = []
    seed = 0
    while len(seeds) < count:
        if seed not in used:
            seeds.append(seed)
        seed += 1
    return seeds
