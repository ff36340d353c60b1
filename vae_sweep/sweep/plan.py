"""Everything a worker process needs to run trials of one study, as a small picklable value.

Process-based launchers (joblib, submitit) ship the plan to their workers; each worker
rebuilds its own storage, sampler and pruner from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.storages import RDBStorage

from vae_sweep.sweep.apps import App, VaeTrain
from vae_sweep.sweep.retry import RetryTrial
from vae_sweep.sweep.samplers_and_pruners import SEQUENCE_SAMPLERS, make_pruner, make_sampler
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
    local_workers: bool  # all workers on this machine (joblib, submitit_local, a local Ray): they split its cores
    max_failure_rate: float
    heartbeat_interval: int
    grace_period: int | None
    max_retry: int
    parent_run_id: str | None
    tracking_uri: str | None
    launch_id: str = ""  # one per sweep command: its workers know each other by it
    searchpath: tuple[str, ...] = ()  # hydra.searchpath: config folders of one's own (an extension's options)
    sweeper_pid: int = 0  # the process that runs the sweep; its local workers watch it
    app: App = field(default_factory=VaeTrain)  # the app swept: vae-train or any other Hydra app

    @property
    def heartbeats(self) -> bool:
        return bool(self.heartbeat_interval)

    def retry(self) -> RetryTrial:
        return RetryTrial(self.max_retry)

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

    def sampler(self, trial_number: int = 0) -> optuna.samplers.BaseSampler:
        """Seeded by ``trial_seed(seed, trial_number)``: each trial draws differently, whichever
        worker or machine runs it (one seed per worker would repeat draws across processes).
        Samplers whose seed fixes one sequence for the whole study keep the seed as it is."""
        seed = self.sampler_seed
        if seed is not None and self.sampler_name not in SEQUENCE_SAMPLERS:
            seed = trial_seed(seed, trial_number)
        return make_sampler(self.sampler_name, seed, self.sampler_options, self.space)

    def pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.pruner_name, self.pruner_options, multi_objective=self.multi_objective)

    def load_study(self, storage: RDBStorage) -> optuna.Study:
        """A fresh handle on the study, with trial 0's sampler (``for_trial`` gives another trial's)."""
        return optuna.load_study(
            study_name=self.study_name, storage=storage, sampler=self.sampler(), pruner=self.pruner()
        )

    def for_trial(self, study: optuna.Study, trial_number: int) -> optuna.Study:
        """``study`` (a worker's one handle) given the sampler for ``trial_number``. Kept for the
        worker's life, the handle keeps Optuna's cache of finished trials: each read of the study
        then fetches only the trials that are new or unfinished, not all of them again."""
        study.sampler = self.sampler(trial_number)
        return study


def trial_seed(seed: int, trial_number: int) -> int:
    """Trial ``trial_number``'s seed in a study seeded ``seed``: numpy's ``SeedSequence`` of the
    pair, so that studies of other seeds draw other trials. (``seed + trial_number`` made seed 1's
    trials seed 0's shifted by one: random search found the same best with every seed.)

    >>> trial_seed(0, 1) != trial_seed(1, 0), trial_seed(0, 1) == trial_seed(0, 1)
    (True, True)
    """
    return int(np.random.SeedSequence([seed, trial_number]).generate_state(1)[0])
