"""Replicates: chosen trials of a study trained again with other seeds, as a study of their own.

``vae-replicate`` (``vae_sweep.replicate``) chooses the trials; here they become WAITING trials
of the replication study whose params are the chosen trial's plus ``trainer.seed``. The sweep's
own workers then run them like any trial (every launcher, heartbeats, retries, resume): Optuna's
``suggest_*`` gives a trial that has its params those params, so each replicate composes exactly
the configuration it repeats, with its own seed. Which trial and seed a replicate is travels in a
system attribute (``REPLICATE_ATTR``), which a retry keeps, and becomes tags of its MLflow run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from vae_sweep.names import (
    COMMAND_ATTR,
    REPLICATE_ATTR,
    REPLICATE_TAG_PREFIX,
    REPLICATES_OF_ATTR,
    REPLICATION_TAG_PREFIX,
)

SEED_KEY = "trainer.seed"
# The seed's place in a replication study's space, and the distribution that parses to, which
# the enqueued replicates carry: the two must agree (Optuna warns of every trial otherwise).
SEED_SWEEP = f"{SEED_KEY}=int(interval(0, 2147483647))"
SEED_DISTRIBUTION = IntDistribution(0, 2147483647)


def replicated(trials: Iterable[FrozenTrial]) -> set[tuple[int, int]]:
    """(trial repeated, seed) of every replicate in ``trials``, retries included."""
    pairs = set()
    for trial in trials:
        replicate = trial.system_attrs.get(REPLICATE_ATTR)
        if replicate:
            pairs.add((int(replicate["of_trial"]), int(replicate["seed"])))
    return pairs


def add_replicates(
    study: optuna.Study, chosen: Sequence[FrozenTrial], seeds: Sequence[int], *, of_study: str, runs: Mapping[int, str]
) -> int:
    """A WAITING trial for each chosen trial and seed that ``study`` lacks; returns how many were
    added. ``runs`` maps a chosen trial's number to its MLflow run. Call it under ``study_lock``:
    two processes counting the same missing replicates would both add them."""
    have = replicated(study.get_trials(deepcopy=False))
    added = 0
    for source in chosen:
        for seed in seeds:
            if (source.number, seed) in have:
                continue
            replicate = {
                "of_study": of_study,
                "of_trial": source.number,
                "of_run": runs.get(source.number),
                "seed": seed,
            }
            study.add_trial(
                create_trial(
                    state=TrialState.WAITING,
                    params={**source.params, SEED_KEY: seed},
                    distributions={**source.distributions, SEED_KEY: SEED_DISTRIBUTION},
                    system_attrs={REPLICATE_ATTR: replicate},
                )
            )
            added += 1
    return added


def replicate_tags(trial: FrozenTrial) -> dict[str, str]:
    """``replicate.of_study``, ``replicate.of_trial``, ``replicate.of_run``, ``replicate.seed``
    for a replicate's run; nothing for any other trial."""
    replicate = trial.system_attrs.get(REPLICATE_ATTR) or {}
    return {f"{REPLICATE_TAG_PREFIX}{key}": str(value) for key, value in replicate.items() if value is not None}


def replication_tags(study_attrs: Mapping[str, Any]) -> dict[str, str]:
    """``replication.of_study``, ``replication.of_run`` for a replication study's parent run."""
    source = study_attrs.get(REPLICATES_OF_ATTR) or {}
    return {f"{REPLICATION_TAG_PREFIX}{key}": str(value) for key, value in source.items() if value is not None}


def record_command(study: optuna.Study, task: Sequence[str], hydra: Sequence[str]) -> None:
    """The sweep command's overrides (task and ``hydra.*``), for ``vae-replicate`` to run the
    study's configurations again; written only when they changed."""
    command = {"task": list(task), "hydra": list(hydra)}
    if study.user_attrs.get(COMMAND_ATTR) != command:
        study.set_user_attr(COMMAND_ATTR, command)
