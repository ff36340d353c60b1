"""MLflow: one tracked training run (``train_and_track``), its batched logging (``run.MlflowRun``),
pictures and store checks. May use ``vae_sweep.train``, never the sweep.

MLflow takes seconds to import, and a run with ``tracking=none`` never needs it: only
``vae_sweep.track.run`` imports it, and ``train_and_track`` imports that module only for a
tracked run. So ``MlflowRun`` is imported from ``vae_sweep.track.run`` by those who need it.
"""

from vae_sweep.track.training import ResumePoint, train_and_track
from vae_sweep.track.urls import masked

__all__ = ["ResumePoint", "masked", "train_and_track"]
