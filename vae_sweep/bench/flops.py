"""FLOP accounting: the analytic cost of one training sample, and the machine's sgemm peak."""

from __future__ import annotations

import time

import torch
from torch import nn

# Forward is 2 * in * out per Linear layer and sample; backward (input and weight gradients) twice that.
TRAINING_FLOPS_PER_MAC = 6


def training_flops_per_sample(model: nn.Module) -> int:
    """Matmul FLOPs of one forward + backward pass per sample, summed over every ``nn.Linear``
    (encoder, mu and log-variance heads, decoder). Elementwise work is left out: it is small
    beside the matmuls, and leaving it out keeps the ratio to the sgemm peak honest."""
    macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    return TRAINING_FLOPS_PER_MAC * macs


def matmul_peak_gflops(*, threads: int, size: int = 1024, repeats: int = 10) -> float:
    """Best GFLOP/s of a ``size``^3 float32 ``torch.mm`` on ``threads`` threads: the practical peak
    that the training's achieved rate is compared against (best of ``repeats``, after a warm-up)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.rand(size, size)
        b = torch.rand(size, size)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9
