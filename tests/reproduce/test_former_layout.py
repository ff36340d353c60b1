"""A run logged before vae_sweep/train/ existed still reproduces, bit for bit.

``fixtures/layout_v1_run`` is what vae-sweep logged for a tiny run at commit 8bd6269, the last
one of the flat layout, whose ``config.yaml`` names spec classes by their former modules
(``vae_sweep.optim.SGD``, ``vae_sweep.config.TrainerSpec``): the config, the weights, and the
run's final metrics, tags and params. The test puts them back into an MLflow store as that run,
then re-runs it with today's code. The run was made on CPU with torch 2.13.0 by::

    vae-train data=synthetic data.n_samples=300 data.side=8 'model.encoder_hidden=[16]' \
        'model.decoder_hidden=[16]' model.latent_dim=4 trainer.epochs=2 trainer.iwae_samples=4 \
        trainer.num_threads=1 optimizer=momentum scheduler=cyclic

and the reproduction must give the same metrics and weights: bit for bit on a CPU like the one
that made the fixture, within ``CROSS_CPU_TOLERANCE`` on another.
"""

from __future__ import annotations

import pytest
import yaml
from helpers.former_run import CROSS_CPU_TOLERANCE, FIXTURE, log_former_run, reproduced_alike

from vae_sweep import cli
from vae_sweep.errors import ConfigError
from vae_sweep.train import parse_run_config


def test_the_fixture_names_spec_classes_by_their_former_modules():
    config = yaml.safe_load((FIXTURE / "config.yaml").read_text())
    targets = {group: node["_target_"] for group, node in config.items() if isinstance(node, dict)}
    assert targets["optimizer"] == "vae_sweep.optim.SGD" and targets["scheduler"] == "vae_sweep.optim.Cyclic"
    assert targets["trainer"] == "vae_sweep.config.TrainerSpec"


def test_a_run_logged_by_the_former_layout_reproduces_bit_for_bit(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_former_run(uri)
    capsys.readouterr()
    code = cli.reproduce([run_id, "--tracking-uri", uri, "--tolerance", CROSS_CPU_TOLERANCE])
    out = capsys.readouterr().out
    assert code == 0 and reproduced_alike(out), out
    identical = "Verdict: identical (every final metric and every weight bit for bit)" in out
    assert ("Weights: bitwise equal (10 tensors)" in out) == identical


@pytest.mark.parametrize("former", ["vae_sweep.optim.os", "vae_sweep.nowhere.SGD"])
def test_a_former_module_name_finds_only_registered_classes(former):
    """The former names are an alias of the registry, not a way around it."""
    config = (FIXTURE / "config.yaml").read_text().replace("vae_sweep.optim.SGD", former)
    with pytest.raises(ConfigError) as refused:
        parse_run_config(yaml.safe_load(config))
    assert refused.value.key == "optimizer._target_"
    assert f"'{former}' is not allowed here" in str(refused.value)
