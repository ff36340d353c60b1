"""vae-sweep: hyperparameter sweeps for variational autoencoders.

The parts, and who may import whom (``tests/test_layout.py`` reads the imports and checks it):

- ``train/``: the math. Data, models, losses, regularization, optimizers, schedules, the loop,
  the config specs. Knows nothing of MLflow, Optuna or Hydra's sweeper; imports only
  ``errors``, ``names`` and ``interrupts``.
- ``track/``: MLflow. One tracked training run, its batched logging, pictures, store checks.
  May import ``train/``; never ``sweep/``.
- ``sweep/``: the Optuna sweeper behind ``hydra/sweeper=vae_sweep``: search space, study and
  storage, workers, the pruning bridge, results. May import ``track/`` and ``train/``.
- ``compare/`` (vae-compare) and ``reproduce/`` (vae-reproduce): read finished studies and runs
  back out. May import ``track/`` and ``train/``.
- ``bench/``: the benchmarks behind docs/benchmarks.md.
- Shared by all, importing nothing of ours but ``errors``: ``errors`` (the error classes),
  ``names`` (every MLflow tag, Optuna attribute and metric name), ``interrupts`` (the process's
  signal state), ``overrides`` (Hydra override text), ``local_stores`` (the SQLite files and
  folders every part writes), ``hydra_version`` (the ``version_base`` each Hydra version wants),
  ``lazy_exports`` (names loaded from their module when first used), ``garbage`` (when the
  commands and the sweep's workers let the garbage collector walk the heap).
- ``cli``: the console entry points, and the one place that turns errors into exit codes.

One name is public here for any Hydra app swept by ``hydra/sweeper=vae_sweep``:
``current_trial()`` (``sweep.current_trial``), loaded when first used so that ``import
vae_sweep`` stays light.
"""

from __future__ import annotations

from vae_sweep.lazy_exports import lazy_getattr

__version__ = "0.1.0"
__all__ = ["current_trial"]
__getattr__ = lazy_getattr(__name__, {"current_trial": "vae_sweep.sweep.current_trial"})
