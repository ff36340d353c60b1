"""Performance benchmarks: ``python -m vae_sweep.bench`` measures each thing side by side with a
reference in the same run and writes ``docs/performance.md`` (and, with ``--json``, the raw numbers).

One module per kind of measurement: ``baseline`` is the reference loop written the way
pytorch/examples writes it and ``trainer`` times both loops on the same data (row 1); ``flops``
holds the analytic FLOP count and the matmul peak (row 2); ``timed_sweep`` runs a real sweep with
timers around its steps and ``overhead`` sets it against bare training (row 3); ``sweeps`` runs
whole studies for parallel scaling, pruning and samplers (rows 4-6); ``scale`` measures time and
memory as data and trial counts grow (row 7); ``versus_script`` runs our sweep and
``handwritten.py``, the script a user would write instead, as whole processes (row 8); ``gpu``
reads the GPU check's numbers (row 9); ``report`` renders the page and ``page`` merges a run of
some rows into the previous one.
"""

from vae_sweep.bench.flops import matmul_peak_gflops, training_flops_per_sample
from vae_sweep.bench.trainer import ThroughputRun, measure_throughput

__all__ = ["ThroughputRun", "matmul_peak_gflops", "measure_throughput", "training_flops_per_sample"]
