"""The Optuna sweeper behind ``hydra/sweeper=vae_sweep``: the search space (``space``,
``distributions``), the study and its storage (``study``, ``locks``, ``owners``, ``retry``), the
workers that claim and run trials (``worker``, ``trial_link``), the study's MLflow parent run
(``parent_run``), what it prints (``progress``, ``verbosity``) and the results (``results``,
``plots``). May use ``vae_sweep.track`` and
``vae_sweep.train``; ``hydra_plugins/vae_sweep_optuna`` is its only entry point.

Names are loaded from their module when first used (PEP 562): a worker process imports only the
parts it runs.
"""

from __future__ import annotations

from vae_sweep.lazy_exports import lazy_getattr

_EXPORTS = {
    "OptunaSweeperImpl": "vae_sweep.sweep.sweeper",
    "OptunaSweeperSettings": "vae_sweep.sweep.settings",
    "SearchSpace": "vae_sweep.sweep.space",
    "parse_search_space": "vae_sweep.sweep.space",
    "parse_distribution": "vae_sweep.sweep.distributions",
    "make_storage": "vae_sweep.sweep.study",
    "SAMPLERS": "vae_sweep.sweep.samplers_and_pruners",
    "PRUNERS": "vae_sweep.sweep.samplers_and_pruners",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
