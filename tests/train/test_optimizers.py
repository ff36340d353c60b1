"""torch's fused optimizer kernels: the option files take them where the device has them, a
config without the key (one logged before it existed) trains as it did then, and insisting on a
kernel the device lacks is refused with the key, before the first step."""

from __future__ import annotations

import pytest
import torch

from vae_sweep.errors import ConfigError
from vae_sweep.train import parse_run_config
from vae_sweep.train.optimizers import SGD, Adagrad, Adam, AdamW
from vae_sweep.train.specs import parse_spec, target_of


def parameters(device: str = "cpu") -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(5, 3, device=device)), torch.nn.Parameter(torch.randn(3, device=device))]


@pytest.mark.parametrize("option", ["sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"])
def test_the_option_files_take_the_fused_kernel_the_cpu_has(compose_config, option) -> None:
    spec = parse_run_config(compose_config(f"optimizer={option}")).optimizer
    assert spec.fused is None
    assert spec.build(parameters(), weight_decay=None).param_groups[0]["fused"] is True


@pytest.mark.parametrize("spec_class", [SGD, Adagrad, Adam, AdamW])
def test_a_config_without_the_key_keeps_the_implementation_it_was_logged_with(spec_class) -> None:
    spec = parse_spec({"_target_": target_of(spec_class)}, "optimizer")
    assert spec.fused is False
    assert not spec.build(parameters(), weight_decay=None).param_groups[0]["fused"]


def test_null_falls_back_where_the_device_has_no_fused_kernel() -> None:
    """The meta device has no fused kernels: null takes torch's default there, without a step."""
    optimizer = Adam(fused=None).build(parameters("meta"), weight_decay=None)
    assert optimizer.param_groups[0]["fused"] is False


def test_insisting_on_a_missing_kernel_is_refused_with_the_key() -> None:
    with pytest.raises(ConfigError) as refused:
        Adam(fused=True).build(parameters("meta"), weight_decay=None)
    assert refused.value.key == "optimizer.fused"
    assert "no fused Adam for meta float32 parameters" in str(refused.value)
    assert "use null" in str(refused.value)


@pytest.mark.parametrize(
    "spec", [Adam(), AdamW(), SGD(momentum=0.9, nesterov=True), Adagrad()], ids=["adam", "adamw", "nesterov", "adagrad"]
)
def test_the_fused_kernel_takes_the_same_steps(spec) -> None:
    """Same algorithm, one kernel: after 20 steps towards a target the weights agree to float32
    rounding, and both moved."""
    trained = []
    for fused in (False, True):
        params = parameters()
        optimizer = type(spec)(**{**vars(spec), "fused": fused}).build(params, weight_decay=0.01)
        for _ in range(20):
            optimizer.zero_grad()
            sum(((p - 1.0) ** 2).sum() for p in params).backward()
            optimizer.step()
        trained.append([p.detach() for p in params])
    for start, plain, fused in zip(parameters(), *trained, strict=True):
        assert not torch.allclose(plain, start)
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
