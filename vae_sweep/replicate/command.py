"""The ``vae-train -m`` command line of a replication study, from the command that swept the study.

The study's recorded overrides are kept, so the trials compose the same config groups and
search space (whose params the replicates fix) on the same launcher. What makes it a replication
replaces the settings of the same name: the study and its storage, the budget (the replicates
enqueued), ``trainer.seed`` in the space, random sampling (every param is fixed: nothing to
model) and no pruning of any kind (a replicate is trained to the end, as the configuration it
repeats was or would have been). The user's own overrides come last and win over the recorded ones.

    >>> command = {"task": ["study=techniques", "trainer.seed=7"], "hydra": ["hydra.mode=MULTIRUN",
    ...            "hydra.sweeper.n_trials=60", "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner.name=median"]}
    >>> replication_argv(command, study="t-replicates", n_trials=15, storage="sqlite:////s/optuna.db",
    ...                  extra=["hydra.sweeper.n_jobs=1"])  # doctest: +NORMALIZE_WHITESPACE
    ['-m', 'study=techniques', 'trainer.seed=int(interval(0, 2147483647))', 'hydra.sweeper.study_name=t-replicates',
     'hydra.sweeper.storage=sqlite:////s/optuna.db', 'hydra.sweeper.n_trials=15', 'hydra.sweeper.sampler=random',
     'hydra.sweeper.pruner=none', 'hydra.sweeper.collapse_patience=null', 'hydra.sweeper.n_jobs=1']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vae_sweep.sweep.replicates import SEED_KEY, SEED_SWEEP

# Recorded overrides a replication sets itself (a key, or a node whose keys all go).
REPLACED = (
    "hydra.mode",
    "hydra.sweeper.study_name",
    "hydra.sweeper.storage",
    "hydra.sweeper.n_trials",
    "hydra.sweeper.collapse_patience",
)
REPLACED_NODES = ("hydra.sweeper.fresh", "hydra.sweeper.sampler", "hydra.sweeper.pruner", SEED_KEY)


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~x`` -> ``x``; ``group@pkg=opt`` -> ``group``."""
    return override.lstrip("~+").split("=", 1)[0].split("@", 1)[0].strip()


def replaced(key: str, keys: Sequence[str], nodes: Sequence[str]) -> bool:
    return key in keys or any(key == node or key.startswith(f"{node}.") for node in nodes)


def replication_argv(
    command: Mapping[str, Sequence[str]], *, study: str, n_trials: int, storage: str, extra: Sequence[str]
) -> list[str]:
    """``vae-train``'s arguments for the replication ``study`` of ``n_trials`` replicates."""
    given = [override_key(override) for override in extra]
    kept = [
        override
        for override in [*command.get("hydra", ()), *command.get("task", ())]
        if not replaced(override_key(override), (*REPLACED, *given), REPLACED_NODES)
    ]
    own = [
        SEED_SWEEP,
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.sampler=random",
        "hydra.sweeper.pruner=none",
        "hydra.sweeper.collapse_patience=null",
    ]
    return ["-m", *kept, *own, *extra]
