"""Performance benchmarks: ``python -m vae_sweep.bench`` measures the trainer against a plain
PyTorch loop and against the machine's sgemm peak, and writes ``docs/performance.md``.

The modules split the work by what each measures: ``baseline`` is the reference loop written
the way pytorch/examples writes it, ``trainer`` times both loops on the same data,
``flops`` holds the analytic FLOP count and the matmul peak, and ``report`` renders the page.
"""

from vae_sweep.bench.flops import matmul_peak_gflops, training_flops_per_sample
from vae_sweep.bench.trainer import ThroughputRun, measure_throughput

__all__ = ["ThroughputRun", "matmul_peak_gflops", "measure_throughput", "training_flops_per_sample"]
