"""Everything a worker process needs to run trials of one study, as a small picklable value.

Process-based launchers (joblib, submitit) ship the plan to their workers; each worker
rebuilds its own storage, sampler and pruner from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.storages import RDBStorage

from vae_sweep.sweep.samplers import make_pruner, make_sampler
from vae_sweep.sweep.space import SearchSpace
from vae_sweep.sweep.study import make_storage


@dataclass(frozen=True)
class SweepPlan:
    study_name: str
    storage_url: str
    directions: tuple[str, ...]
    space: SearchSpace
    base_overrides: tuple[str, ...]  # the command line's fixed overrides, applied to every trial
    sampler_name: str
    sampler_seed: int | None
    sampler_options: dict
    pruner_name: str
    pruner_options: dict
    n_jobs: int
    max_failure_rate: float
    heartbeat_interval: int
    grace_period: int | None
    max_retry: int
    parent_run_id: str | None
    tracking_uri: str | None

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def storage(self) -> RDBStorage:
        return make_storage(
            self.storage_url,
            heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period,
            max_retry=self.max_retry,
        )

    def sampler(self, worker: int = 0) -> optuna.samplers.BaseSampler:
        """Each worker gets its own seed stream, or parallel workers would draw the same points."""
        seed = None if self.sampler_seed is None else self.sampler_seed + worker
        return make_sampler(self.sampler_name, seed, self.sampler_options, self.space)

    def pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.pruner_name, self.pruner_options, multi_objective=self.multi_objective)

    def load_study(self, storage: RDBStorage, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        """A fresh handle on the study; pass the worker's one sampler, whose random state must
        carry over from trial to trial (a new seeded sampler would repeat its first draw)."""
        return optuna.load_study(
            study_name=self.study_name, storage=storage, sampler=sampler or self.sampler(), pruner=self.pruner()
        )
