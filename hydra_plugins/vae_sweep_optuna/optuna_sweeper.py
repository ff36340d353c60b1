"""``hydra/sweeper=vae_sweep``: a thin Sweeper delegating to ``vae_sweep.sweep.sweeper``.

Hydra imports every module under ``hydra_plugins`` when it starts, so this one stays light:
Optuna and MLflow are imported only when a sweep actually begins.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from vae_sweep.sweep.settings import OptunaSweeperSettings


def registered(group: str, name: str) -> bool:
    """Hydra's plugin scan may run this module twice; Hydra 1.4 warns when a name is stored again."""
    try:
        return f"{name}.yaml" in ConfigStore.instance().list(group)
    except OSError:  # the group does not exist yet
        return False


if not registered("hydra/sweeper", "vae_sweep"):
    ConfigStore.instance().store(
        group="hydra/sweeper", name="vae_sweep", node=OptunaSweeperSettings, provider="vae-sweep"
    )


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from vae_sweep.sweep.sweeper import OptunaSweeperImpl

        self._impl = OptunaSweeperImpl(settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self._impl.sweep(arguments)
