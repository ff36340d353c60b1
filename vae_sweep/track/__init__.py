"""MLflow: one tracked training run (``train_and_track``), its batched logging (``run.MlflowRun``),
pictures and store checks. May use ``vae_sweep.train``, never the sweep.

MLflow takes seconds to import, and a run with ``tracking=none`` never needs it: only
``vae_sweep.track.run`` imports it, and ``train_and_track`` imports that module only for a
tracked run. So ``MlflowRun`` is imported from ``vae_sweep.track.run`` by those who need it.
Names here are loaded from their module when first used (PEP 562): the sweeper of a plain
Hydra app reads ``track.urls`` without importing torch and the trainer.
"""

from __future__ import annotations

from vae_sweep.lazy_exports import lazy_getattr

_EXPORTS = {
    "ResumePoint": "vae_sweep.track.training",
    "train_and_track": "vae_sweep.track.training",
    "masked": "vae_sweep.track.urls",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
