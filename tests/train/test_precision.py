"""``trainer.precision`` and ``trainer.gpus``: what runs on this CPU machine, and one line for
what needs a GPU (the GPU check, .ci/gpu-check, runs the rest where there is one)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.run_if import without_cuda

from vae_sweep.errors import ConfigError
from vae_sweep.train import train
from vae_sweep.train.config import worker_gpu


def test_bf16_autocast_trains_on_the_cpu_and_changes_the_arithmetic(tiny_config):
    full = train(tiny_config("trainer.epochs=2"))
    half = train(tiny_config("trainer.epochs=2", "trainer.precision=bf16"))
    assert all(math.isfinite(value) for value in half.metrics.values())
    assert half.history[-1]["train_loss"] != full.history[-1]["train_loss"]  # the steps ran in bfloat16
    assert abs(half.metrics["test_loss"] - full.metrics["test_loss"]) < 0.05 * full.metrics["test_loss"]


def test_full_precision_is_the_default_and_reproducible(tiny_config):
    first, second = train(tiny_config()), train(tiny_config("trainer.precision=32"))
    timing = {"samples_per_sec", "train_seconds"}
    assert {k: v for k, v in first.metrics.items() if k not in timing} == {
        k: v for k, v in second.metrics.items() if k not in timing
    }


@without_cuda
def test_float16_mixed_precision_without_a_gpu_is_refused_in_one_line(tiny_config):
    with pytest.raises(ConfigError) as refused:
        tiny_config("trainer.precision=16-mixed").trainer.resolve_device()
    assert refused.value.key == "trainer.precision"
    assert "16-mixed (float16 autocast with a gradient scaler) needs a CUDA device" in refused.value.message


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ("trainer.precision=64", "trainer.precision", "must be one of 32, bf16, 16-mixed, got '64'"),
        ("trainer.gpus=[]", "trainer.gpus", "must be a non-empty list of CUDA device indices >= 0, or null"),
        ("trainer.gpus=[0,-1]", "trainer.gpus", "must be a non-empty list of CUDA device indices >= 0, or null"),
    ],
)
def test_bad_precision_or_gpu_lists_name_the_key(override, key, message, tiny_config):
    with pytest.raises(ConfigError) as refused:
        tiny_config(override)
    assert refused.value.key == key and message in refused.value.message


@pytest.mark.parametrize(
    ("visible", "gpus", "expected"),
    [
        (2, None, [0, 1, 0, 1]),  # n_jobs=4 on two GPUs
        (8, None, [0, 1, 2, 3]),
        (4, [3, 1], [3, 1, 3, 1]),  # the user's list, in its order
        (0, None, [None] * 4),  # no GPU: workers stay on the cpu
    ],
)
def test_each_worker_takes_the_next_gpu(visible, gpus, expected):
    assert [worker_gpu(worker, visible, gpus) for worker in range(4)] == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_run_trains_on_the_gpu_the_worker_was_given(tiny_config):
    config = tiny_config("trainer.device=cuda", "trainer.precision=16-mixed")
    assert config.trainer.resolve_device().type == "cuda"
    assert all(math.isfinite(value) for value in train(config).metrics.values())
