"""Config validation: every option file parses, and a bad value fails early naming its key."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

from vae_sweep.errors import ConfigError
from vae_sweep.names import OBJECTIVES
from vae_sweep.train.config import CONFIG_VERSION, GROUPS, RunConfig, parse_run_config
from vae_sweep.train.models import Activation
from vae_sweep.train.specs import allowed_targets

CONF_DIR = Path(str(files("vae_sweep.conf")))  # the packaged config groups

Compose = Callable[..., DictConfig]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


OPTION_FILES = [pytest.param(group, name, id=f"{group}={name}") for group in GROUPS for name in options(group)]


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert options(group), group


@pytest.mark.parametrize(("group", "option"), OPTION_FILES)
def test_every_option_file_parses(
    group: str, option: str, compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAE_SWEEP_DATA", str(tmp_path))  # the IDX data sets interpolate it; nothing is read
    config = parse_run_config(compose_config(f"{group}={option}"))
    spec = getattr(config, group)
    assert isinstance(spec, GROUPS[group])
    raw = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
    assert raw._target_ in allowed_targets()
    if "name" in raw:
        assert spec.name == option, "an option file's name should match the file, as the tracker logs it"


def test_default_config_parses_to_its_defaults(compose_config: Compose) -> None:
    config = parse_run_config(compose_config())
    assert isinstance(config, RunConfig)
    assert (config.data.name, config.model.name, config.optimizer.name) == ("digits", "seed_mlp", "adam")
    assert config.objectives == ("val_loss",)


def test_a_saved_plain_config_parses_the_same(compose_config: Compose) -> None:
    cfg = compose_config("optimizer=nesterov", "model.latent_dim=7", "tracking=none")
    saved = OmegaConf.to_container(cfg, resolve=True)  # what a run logs as config.yaml
    assert parse_run_config(saved) == parse_run_config(cfg)


def test_a_config_parsed_again_is_a_copy_and_a_bad_one_fails_again(compose_config: Compose) -> None:
    """A worker's trials parse the same groups again (kept from the first parse): each parse must
    still be its own object, and a refused value must be refused every time, not remembered."""
    cfg = compose_config("model.latent_dim=7")
    first = parse_run_config(cfg)
    first.model.latent_dim = 99
    first.trainer.epochs = 1
    again = parse_run_config(cfg)
    assert (again.model.latent_dim, again.trainer.epochs) == (7, cfg.trainer.epochs)
    assert again.model is not first.model
    bad = compose_config("model.latent_dim=0")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"model\.latent_dim"):
            parse_run_config(bad)


# --- one clear error per bad value -----------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key", "shown"),
    [
        ("optimizer.lr=-1", "optimizer.lr", "-1"),
        ("optimizer.lr=abc", "optimizer.lr", "abc"),
        ("model.encoder_dropout=1.0", "model.encoder_dropout", "1.0"),
        ("model.latent_dim=0", "model.latent_dim", "0"),
        ("trainer.batch_size=0", "trainer.batch_size", "0"),
        ("trainer.epochs=0", "trainer.epochs", "0"),
        ("optimizer=sgd optimizer.momentum=1.0", "optimizer.momentum", "1.0"),
        ("scheduler=exponential scheduler.gamma=0", "scheduler.gamma", "0"),
        ("regularization.beta=-0.5", "regularization.beta", "-0.5"),
        ("data.binarize=sometimes", "data.binarize", "sometimes"),
        ("trainer.device=tpu", "trainer.device", "tpu"),
        ("trainer.patience=0", "trainer.patience", "0"),
        ("trainer.min_delta=-0.1", "trainer.min_delta", "-0.1"),
        ("trainer.monitor=val_los", "trainer.monitor", "did you mean val_loss?"),
    ],
)
def test_bad_value_names_its_key(override: str, key: str, shown: str, compose_config: Compose) -> None:
    cfg = compose_config(*override.split())
    with pytest.raises(ConfigError) as info:
        parse_run_config(cfg)
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith(f"{key}: ")
    assert shown in message
    assert "\n" not in message


def test_unknown_activation_lists_the_allowed_values(compose_config: Compose) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config("model.activation=swish"))
    assert info.value.key == "model.activation"
    for kind in Activation:
        assert kind.value in str(info.value)


def test_unknown_objective_lists_the_allowed_metrics(compose_config: Compose) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config("objective=nope"))
    assert info.value.key == "objective"
    assert "'nope'" in str(info.value)
    for name in OBJECTIVES:
        assert name in str(info.value)


def test_foreign_target_is_refused(compose_config: Compose) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config("optimizer._target_=os.system"))
    assert info.value.key == "optimizer._target_"
    assert "os.system" in str(info.value)
    assert "vae_sweep.train.optimizers.Adam" in str(info.value)


def test_target_of_another_group_is_refused(compose_config: Compose) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config("optimizer._target_=vae_sweep.train.models.MLPVAESpec"))
    assert info.value.key == "optimizer._target_"


def test_unknown_key_in_a_group_is_refused(compose_config: Compose) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config("+model.dropout=0.1"))
    assert info.value.key == "model.dropout"
    assert "encoder_dropout" in str(info.value)  # the allowed keys are listed


def test_unknown_top_level_key_is_refused(compose_config: Compose) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config("+epochs=3"))
    assert info.value.key == "epochs"


def test_missing_group_is_refused(compose_config: Compose) -> None:
    saved = OmegaConf.to_container(compose_config("tracking=none"), resolve=True)
    del saved["scheduler"]
    with pytest.raises(ConfigError) as info:
        parse_run_config(saved)
    assert info.value.key == "scheduler"


def test_config_version_mismatch_is_refused(compose_config: Compose) -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_config(compose_config(f"config_version={CONFIG_VERSION + 1}"))
    assert info.value.key == "config_version"
    assert str(CONFIG_VERSION + 1) in str(info.value)


def test_unknown_option_fails_in_composition_listing_the_options(compose_config: Compose) -> None:
    with pytest.raises(MissingConfigException) as info:
        compose_config("optimizer=foo")
    message = str(info.value)
    assert "optimizer/foo" in message
    for name in options("optimizer"):
        assert name in message
