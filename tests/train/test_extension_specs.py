"""Extensions of one's own (vae_sweep.train.extensions): what they may register, and one clear
line for each way they can be wrong, before anything trains."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
from helpers.in_process import vae_train
from helpers.tiny import TINY_SWEEP

from vae_sweep.errors import ConfigError
from vae_sweep.train import parse_run_config, train
from vae_sweep.train.extensions import loaded_extensions

SPEC = """
import math
from dataclasses import dataclass

import torch
from torch import nn

from vae_sweep.train import ModelSpec, VAEModule, register


class Tiny(VAEModule):
    def __init__(self, spec, input_shape):
        super().__init__()
        self.latent_dim = spec.latent_dim
        width = math.prod(input_shape) + spec.wrong_by
        self.output_shape = (width,) if spec.wrong_by else tuple(input_shape)  # flat when wrong
        self.encoder = nn.Linear(math.prod(input_shape), 2 * spec.latent_dim)
        self.decoder = nn.Linear(spec.latent_dim, width)

    def encode(self, x):
        return self.encoder(x.flatten(1)).chunk(2, dim=-1)

    def decode(self, z):
        return self.decoder(z).view(-1, *self.output_shape)


@register
@dataclass
class TinySpec(ModelSpec):
    name: str = "tiny"
    latent_dim: int = 2
    wrong_by: int = 0

    def build(self, input_shape):
        return Tiny(self, input_shape)
"""


def extension(folder: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """A module of the test's own, importable by a fresh name; returns the name."""
    name = f"ext_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    return name


def with_model(compose_config, tiny_overrides, module: str, **fields) -> dict:
    cfg = compose_config(*tiny_overrides, f"extensions=[{module}]")
    config = dict(cfg)
    config["model"] = {"_target_": f"{module}.TinySpec", **fields}
    return config


def test_a_listed_extension_registers_its_model_which_trains_and_is_recorded(
    compose_config, tiny_overrides, tmp_path, monkeypatch
):
    module = extension(tmp_path, monkeypatch, SPEC)
    config = parse_run_config(with_model(compose_config, tiny_overrides, module))
    assert type(config.model).__name__ == "TinySpec"
    result = train(config)
    assert {"test_loss", "test_recon", "test_kl", "test_iwae", "active_units"} <= set(result.metrics)  # for free
    assert result.metrics["test_iwae"] <= result.metrics["test_loss"] + 1e-4  # the IWAE bound is the tighter one
    assert any(e.module == module and e.source == "config" for e in loaded_extensions())


def test_a_model_that_breaks_the_contract_is_named_before_it_trains(
    compose_config, tiny_overrides, tmp_path, monkeypatch
):
    module = extension(tmp_path, monkeypatch, SPEC)
    config = parse_run_config(with_model(compose_config, tiny_overrides, module, wrong_by=3))
    with pytest.raises(ConfigError) as refused:
        train(config)
    assert refused.value.key == "model"
    assert refused.value.message == "Tiny: decode() has shape (2, 67), expected (2, 1, 8, 8) for inputs (2, 1, 8, 8)"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(None, "(ModuleNotFoundError: No module named '{module}')", id="missing"),
        pytest.param("raise RuntimeError('no GPU library')", "(RuntimeError: no GPU library)", id="raises"),
        pytest.param("import not_installed_dependency_x", "(ModuleNotFoundError: No module named", id="dependency"),
    ],
)
def test_an_extension_that_does_not_import_is_one_line_naming_it(
    source, expected, compose_config, tmp_path, monkeypatch
):
    module = extension(tmp_path, monkeypatch, source) if source else "no_such_extension_module"
    with pytest.raises(ConfigError) as refused:
        parse_run_config(compose_config(f"extensions=[{module}]"))
    assert refused.value.key == "extensions[0]"
    assert refused.value.message.startswith(f"cannot import extension module '{module}' ")
    assert expected.format(module=module) in refused.value.message


def test_a_class_registered_twice_is_refused(compose_config, tmp_path, monkeypatch):
    module = extension(
        tmp_path, monkeypatch, SPEC + "\n\nTinySpec = register(dataclass(type('TinySpec', (ModelSpec,), {})))\n"
    )
    with pytest.raises(ConfigError) as refused:
        parse_run_config(compose_config(f"extensions=[{module}]"))
    assert refused.value.key == "extensions[0]"
    assert f"{module}.TinySpec is registered twice" in refused.value.message


def test_extensions_must_be_a_list_of_module_names(compose_config):
    with pytest.raises(ConfigError) as refused:
        parse_run_config(compose_config("extensions=[7]"))
    assert refused.value.key == "extensions[0]"
    assert "must be a module name such as mypkg.vae_specs, got 7" in refused.value.message


def test_an_unregistered_class_is_still_refused_even_from_a_loaded_extension(compose_config, tmp_path, monkeypatch):
    module = extension(tmp_path, monkeypatch, SPEC + "\n\nclass Loose:\n    pass\n")
    config = dict(compose_config(f"extensions=[{module}]"))
    config["model"] = {"_target_": f"{module}.Loose"}
    with pytest.raises(ConfigError) as refused:
        parse_run_config(config)
    assert refused.value.key == "model._target_"
    assert f"'{module}.Loose' is not allowed here" in refused.value.message


def test_vae_train_names_a_broken_extension_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    outcome = vae_train(tmp_path, [*TINY_SWEEP, "tracking=none", "extensions=[no_such_extension_module]"], capsys)
    assert outcome.code == 2, outcome.text
    assert outcome.error_lines() == [
        "vae-train: error: extensions[0]: cannot import extension module 'no_such_extension_module' "
        "(ModuleNotFoundError: No module named 'no_such_extension_module')"
    ]
