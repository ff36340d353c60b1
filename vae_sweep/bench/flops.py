"""FLOP accounting: the analytic cost of one training sample, and the machine's sgemm peak."""

from __future__ import annotations

import time

import torch
from torch import nn

# Forward is 2 FLOPs per multiply-accumulate; backward (input and weight gradients) twice that.
TRAINING_FLOPS_PER_MAC = 6


def training_flops_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Matmul and convolution FLOPs of one forward + backward pass per sample: every
    ``nn.Linear``, ``nn.Conv2d`` and ``nn.ConvTranspose2d`` (encoder, heads, decoder), counted
    on one dry run of a sample of ``input_shape``. Elementwise work is left out: it is small
    beside them, and leaving it out keeps the ratio to the sgemm peak honest."""
    macs = 0

    def count(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(layer, nn.Linear):
            macs += output.numel() * layer.in_features
        elif isinstance(layer, nn.Conv2d):  # each output element: in_channels x kernel
            macs += output.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, nn.ConvTranspose2d):  # each input element spreads over out_channels x kernel
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            macs += inputs[0].numel() * layer.out_channels // layer.groups * kernel

    hooks = [module.register_forward_hook(count) for module in model.modules()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return TRAINING_FLOPS_PER_MAC * macs


def cuda_matmul_peak_gflops(*, size: int = 8192, repeats: int = 10) -> float:
    """The GPU's own float32 matmul peak (TF32 as torch's defaults allow it), as the CPU's below."""
    a, b = torch.rand(size, size, device="cuda"), torch.rand(size, size, device="cuda")
    out = torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


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
