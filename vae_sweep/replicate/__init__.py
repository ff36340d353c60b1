"""vae-replicate: a study's best configurations trained again with fresh seeds, for verdicts.

``choose`` picks the configurations and seeds (pure), ``command`` writes the replication
sweep's ``vae-train -m`` command line, ``cli`` ties them to the stores and runs it. The sweep
side (replicates as trials of a study) is ``vae_sweep.sweep.replicates``; the verdicts are
``vae_sweep.compare.verdicts``.
"""

from __future__ import annotations

from vae_sweep.replicate.cli import main

__all__ = ["main"]
