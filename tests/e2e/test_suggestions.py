"""Did-you-mean: a misspelt key, config-group option or value is refused in one line that names
the closest name that exists (when one is close) and what does exist, with exit code 2; never
with Hydra's hint to append the misspelt key with ``+``, which would only be refused next.

``vae-train`` runs in this process (``run_here``): Hydra refuses these while composing, before
any import of the training stack matters, so a process of its own would only add seconds.
"""

from __future__ import annotations

import doctest
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.in_process import run_here, vae_train
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

import vae_sweep.suggestions
from vae_sweep.errors import ConfigError
from vae_sweep.sweep.space import parse_search_space
from vae_sweep.train.config import parse_run_config

Compose = Callable[..., DictConfig]
OPTIMIZERS = "adadelta, adagrad, adam, adamw, momentum, nesterov, rmsprop, sgd"
MODEL_KEYS = (
    "activation, decoder_dropout, decoder_hidden, decoder_norm, encoder_dropout, encoder_hidden, encoder_norm, "
    "gaussian_std, latent_dim, leaky_relu_slope, learn_variance, likelihood, name"
)
TOP_LEVEL = (
    "config_version, data, debug, extensions, hydra, model, objective, optimizer, regularization, scheduler, "
    "study, tracking, trainer"
)


def refused(cwd: Path, *argv: str) -> str:
    """The one ``vae-train: error:`` line of a command line refused with exit code 2, nothing trained."""
    out = run_here(cwd, argv)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vae-train: error: "), out.stderr
    assert "To append" not in out.stderr and "+" not in lines[0]  # Hydra's hint, which would lead nowhere
    assert "Traceback" not in out.stderr and "HYDRA_FULL_ERROR" not in out.stderr
    assert not (cwd / "mlflow.db").exists() and not (cwd / "optuna.db").exists()
    return lines[0].removeprefix("vae-train: error: ")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["model.activaton=relu"],
            f"model.activaton: no such key; did you mean model.activation? (model has: {MODEL_KEYS})",
        ),
        (
            ["optimizer.lrr=0.1"],
            "optimizer.lrr: no such key; did you mean optimizer.lr? "
            "(optimizer has: amsgrad, betas, eps, fused, lr, name)",
        ),
        (["epochz=3"], f"epochz: no such key; did you mean trainer.epochs? (top-level keys and groups: {TOP_LEVEL})"),
        (["studdy=quick"], f"studdy: no such key; did you mean study? (top-level keys and groups: {TOP_LEVEL})"),
        (
            ["optimiser=adam"],
            f"optimiser: no such key; did you mean optimizer? (top-level keys and groups: {TOP_LEVEL})",
        ),
        (
            ["optimizer=adm"],
            f"optimizer=adm: no such option; did you mean optimizer=adam? (optimizer has: {OPTIMIZERS})",
        ),
        (
            ["model=mlp_400"],
            "model=mlp_400: no such option; did you mean model=mlp_400_20? "
            "(model has: burda_mlp, conv, mlp_400_20, resnet, seed_mlp)",
        ),
        (
            ["-m", "hydra/sweeper=vae_swep"],
            "hydra/sweeper=vae_swep: no such option; did you mean hydra/sweeper=vae_sweep? "
            "(hydra/sweeper has: basic, vae_sweep)",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_misspelt_key_or_option_is_one_line_naming_the_one_meant(argv: list[str], line: str, tmp_path: Path):
    assert refused(tmp_path, *argv) == line


def test_a_misspelt_sweeper_setting_names_the_setting_meant(tmp_path: Path):
    line = refused(tmp_path, "-m", "study=quick", "hydra.sweeper.n_trial=3")
    assert line.startswith(
        "hydra.sweeper.n_trial: no such key; did you mean hydra.sweeper.n_trials? (hydra.sweeper has: "
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["optimizer=zzz"], f"optimizer=zzz: no such option (optimizer has: {OPTIMIZERS})"),
        (
            ["optimizer.momentum=0.9"],
            "optimizer.momentum: no such key (optimizer has: amsgrad, betas, eps, fused, lr, name)",
        ),
        (["zzz=1"], f"zzz: no such key (top-level keys and groups: {TOP_LEVEL})"),
        (["model.latent_dim.x=1"], "model.latent_dim.x: no such key (model.latent_dim has no keys below it)"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_with_nothing_close_the_line_lists_what_exists_and_suggests_nothing(argv: list[str], line: str, tmp_path: Path):
    assert refused(tmp_path, *argv) == line


def test_other_hydra_errors_keep_hydras_own_report_and_exit_code_1(tmp_path: Path):
    out = run_here(tmp_path, ["optimizer.lr=("])
    assert out.returncode == 1
    assert "Error parsing override 'optimizer.lr=('" in out.stderr and "vae-train: error:" not in out.stderr


def test_hydra_full_error_still_raises_hydras_exception_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'model\.activaton'"):
        vae_train(tmp_path, ["model.activaton=relu"], capsys)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.activation=relux"],
            "model.activation: Invalid value 'relux', expected one of "
            "[relu, leaky_relu, prelu, elu, gelu, silu, tanh, softplus]; did you mean relu?",
        ),
        (
            ["trainer.device=cude"],
            "trainer.device: Invalid value 'cude', expected one of [cpu, cuda, auto]; did you mean cuda?",
        ),
        (
            ["trainer.progress=lnes"],
            "trainer.progress: must be one of auto, bar, lines, off, got 'lnes'; did you mean lines?",
        ),
        (
            ["trainer.precision=bf6"],
            "trainer.precision: must be one of 32, bf16, 16-mixed, got 'bf6'; did you mean bf16?",
        ),
        (
            ["objective=val_los"],
            "objective: unknown metric 'val_los'; did you mean val_loss? choose one of train_loss, ",
        ),
        (
            ["+model.activaton=relu"],
            "model.activaton: unknown key for 'seed_mlp'; did you mean model.activation? allowed keys: activation, ",
        ),
        (
            ["optimizer._target_=vae_sweep.train.optimizers.Adm"],
            "optimizer._target_: 'vae_sweep.train.optimizers.Adm' is not allowed here; "
            "did you mean vae_sweep.train.optimizers.Adam? allowed: ",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_misspelt_value_names_the_value_meant(overrides: list[str], message: str, compose_config: Compose):
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config(*overrides))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.activation=swish"],
            "model.activation: Invalid value 'swish', expected one of "
            "[relu, leaky_relu, prelu, elu, gelu, silu, tanh, softplus]",
        ),
        (["trainer.progress=loud"], "trainer.progress: must be one of auto, bar, lines, off, got 'loud'"),
        (["objective=accuracy"], "objective: unknown metric 'accuracy'; choose one of train_loss, train_recon, "),
        (
            ["+optimizer.nope=1"],
            "optimizer.nope: unknown key for 'adam'; allowed keys: amsgrad, betas, eps, fused, lr, name",
        ),
        (
            ["data._target_=vae_sweep.train.optimizers.Adam"],
            "data._target_: 'vae_sweep.train.optimizers.Adam' is not allowed here; allowed: ",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_value_with_nothing_close_lists_what_is_allowed_and_suggests_nothing(
    overrides: list[str], message: str, compose_config: Compose
):
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config(*overrides))
    assert str(info.value).startswith(message)
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            "optimzer=sgd",
            "unknown parameter 'optimzer'; a condition tests a choice(...) parameter of this space: "
            "['optimizer']; did you mean optimizer?",
        ),
        ("optimizer=sdg", "'sdg' is not a choice of optimizer; its choices are ['sgd', 'adam']; did you mean sgd?"),
    ],
)
def test_a_misspelt_condition_in_a_search_space_names_the_parameter_or_choice_meant(condition: str, message: str):
    params = {"optimizer": "choice(sgd, adam)", "optimizer.lr": {condition: "interval(0.1, 0.2)", "default": "0.01"}}
    with pytest.raises(ConfigError) as info:
        parse_search_space(params)
    assert info.value.key == f"hydra.sweeper.params.optimizer.lr.{condition}"
    assert info.value.message == message


def test_the_examples_in_the_suggestions_docstrings_hold():
    failed, tried = doctest.testmod(vae_sweep.suggestions)
    assert tried > 0 and failed == 0
