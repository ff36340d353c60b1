"""`vae-reproduce` against real MLflow SQLite stores: a deterministic run comes back bit for bit,
studies are read through their parent runs, and a tampered config.yaml is refused before anything
is trained."""

from __future__ import annotations

import io
import math
import os
import pickle
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from helpers.environment import clean_env
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from vae_sweep import cli
from vae_sweep.errors import ConfigError
from vae_sweep.names import FINAL_METRICS
from vae_sweep.reproduce import (
    MetricDiff,
    compare_weights,
    literal,
    number_ranges,
    verdict,
)
from vae_sweep.reproduce.command import format_value, train_overrides
from vae_sweep.track.training import train_and_track

TIMING = {"samples_per_sec", "train_seconds"}
# Non-default choices that exercise lists, a null turned into a number, batch-norm buffers
# (int64 num_batches_tracked), a per-batch schedule and a run name Hydra needs quoted.
LOGGED_RUN = (
    "tracking=mlflow",
    "trainer.epochs=2",
    "optimizer=adam",
    "scheduler=cyclic",
    "regularization=kl_warmup",
    "regularization.weight_decay=0.01",
    "model.encoder_norm=batchnorm",
    "tracking.run_name='tiny run #1'",
    "tracking.log_images=false",
)


def runs_in(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def download_config(client: MlflowClient, run_id: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        return yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", folder)).read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory, compose_config, tiny_overrides):
    """A SQLite store with one deterministic tiny run, as `vae-train` logs it."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('reproduce')}/mlflow.db"
    cfg = compose_config(*tiny_overrides, *LOGGED_RUN, f"tracking.uri={uri}")
    run_ids: list[str] = []
    train_and_track(cfg, on_run_start=run_ids.append)
    client = MlflowClient(uri)
    return uri, client, client.get_run(run_ids[0])


def reproduce(capsys, *args: str) -> tuple[int, str, str]:
    """``vae-reproduce ARGS`` in this process: exit code, stdout and stderr of that call alone."""
    capsys.readouterr()  # drop what the test's own set-up printed (download progress bars)
    code = cli.reproduce(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def log_copy(
    client: MlflowClient,
    run,
    *,
    config_text: str | None,
    metrics: dict[str, float] | None = None,
    weights: Callable[[bytes], bytes] | None = None,
) -> str:
    """A FINISHED run in the same experiment holding ``config_text`` as its config.yaml, the
    original's weights (``weights(original bytes)`` instead, if given) and ``metrics`` (the
    original's unless given); nothing is trained."""
    copy = client.create_run(run.info.experiment_id, run_name="copy")
    copy_id = copy.info.run_id
    if config_text is not None:
        client.log_text(copy_id, config_text, "config.yaml")
    values = run.data.metrics if metrics is None else metrics
    client.log_batch(copy_id, metrics=[Metric(k, v, 0, 2) for k, v in values.items()])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(client.download_artifacts(run.info.run_id, "model/state_dict.pt", folder))
        if weights is not None:
            path.write_bytes(weights(path.read_bytes()))
        client.log_artifact(copy_id, str(path), "model")
    client.set_terminated(copy_id, "FINISHED")
    return copy_id


# ---------------------------------------------------------------- reproducing


def test_a_deterministic_run_reproduces_bit_for_bit_as_a_new_tagged_run(store, capsys):
    uri, _, original = store
    before = {r.info.run_id for r in runs_in(uri)}

    code, out, err = reproduce(capsys, original.info.run_id, "--tracking-uri", uri)

    assert code == 0, err
    assert "Verdict: identical" in out
    assert "Weights: bitwise equal" in out
    new = [r for r in runs_in(uri) if r.info.run_id not in before]
    assert len(new) == 1
    new_run = new[0]
    assert new_run.info.status == "FINISHED"
    assert new_run.info.experiment_id == original.info.experiment_id
    assert new_run.data.tags["reproduced_from"] == original.info.run_id
    assert new_run.data.tags["reproduce.verdict"] == "identical"
    assert new_run.data.params == original.data.params
    for name in set(FINAL_METRICS) - TIMING:
        assert new_run.data.metrics[name] == original.data.metrics[name], name  # exact, not approx
        assert name in out
    assert f"New run: {new_run.info.run_id}" in out


def test_metrics_beyond_the_tolerance_exit_1_and_within_it_exit_0(store, capsys):
    uri, client, original = store
    nudged = dict(original.data.metrics, test_loss=original.data.metrics["test_loss"] * (1 + 1e-6))
    copy_id = log_copy(client, original, config_text=download_yaml_text(client, original), metrics=nudged)

    code, out, _ = reproduce(capsys, copy_id, "--tracking-uri", uri, "--no-track")
    assert code == 1
    assert "Verdict: DIFFERENT" in out and "in test_loss > --tolerance 0" in out
    assert "Weights: bitwise equal" in out

    code, out, _ = reproduce(capsys, copy_id, "--tracking-uri", uri, "--no-track", "--tolerance", "1e-5")
    assert code == 0
    assert "Verdict: within tolerance" in out


def download_yaml_text(client: MlflowClient, run) -> str:
    return yaml.safe_dump(download_config(client, run.info.run_id), sort_keys=False)


def test_best_picks_the_study_parents_best_run_and_reproduces_a_sweep_trial(finished_study, capsys):
    client = MlflowClient(finished_study.tracking_uri)
    parent = next(r for r in runs_in(finished_study.tracking_uri) if r.data.tags.get("vae_sweep.role") == "study")
    best_id = parent.data.tags["best.run_id"]
    count = len(runs_in(finished_study.tracking_uri))

    code, out, err = reproduce(
        capsys, "--study", "fixture", "--best", "--tracking-uri", finished_study.tracking_uri, "--no-track"
    )

    assert code == 0, err
    assert f"Reproducing run {best_id}, the best trial" in out
    assert "Verdict: identical" in out  # a trial run by a joblib worker process comes back bit for bit
    assert "New run: not logged (--no-track)" in out
    assert len(runs_in(finished_study.tracking_uri)) == count
    assert client.get_run(best_id).data.tags["optuna.trial_number"] == parent.data.tags["best.trial_number"]


def test_trial_picks_that_trials_child_run(finished_study, capsys):
    parent = next(r for r in runs_in(finished_study.tracking_uri) if r.data.tags.get("vae_sweep.role") == "study")
    children = [r for r in runs_in(finished_study.tracking_uri) if r.data.tags.get("mlflow.parentRunId")]
    child = next(r for r in children if r.info.run_id != parent.data.tags["best.run_id"])
    number = child.data.tags["optuna.trial_number"]

    where = ("--tracking-uri", finished_study.tracking_uri)
    code, out, err = reproduce(capsys, "--study", "fixture", "--trial", number, "--print-command", *where)

    assert code == 0, err
    assert f"run {child.info.run_id}, trial {number} of study 'fixture'" in err
    assert f"optimizer.lr={format_value(float(child.data.params['optimizer.lr']))}" in out


def test_a_pruned_trial_has_nothing_to_compare_with(finished_study, capsys):
    pruned = [r for r in runs_in(finished_study.tracking_uri) if "pruned_at_epoch" in r.data.tags]
    if not pruned:
        pytest.skip("this sweep pruned no trial")
    number = pruned[0].data.tags["optuna.trial_number"]
    uri = finished_study.tracking_uri
    code, _, err = reproduce(capsys, "--study", "fixture", "--trial", number, "--tracking-uri", uri)
    assert code == 2
    assert f"was pruned at epoch {pruned[0].data.tags['pruned_at_epoch']}" in err
    assert "--print-command" in err


# ---------------------------------------------------------------- refusing


def tampered(config: dict, **changes) -> str:
    """``config`` with ``group__key=value`` changes (``config_version=...`` at the top)."""
    changed = yaml.safe_load(yaml.safe_dump(config))
    for name, value in changes.items():
        group, _, key = name.partition("__")
        if key:
            changed[group][key] = value
        else:
            changed[group] = value
    return yaml.safe_dump(changed, sort_keys=False)


# 400 bytes that a YAML loader with aliases expands to 9**9 strings, more than memory holds.
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("make_text", "expected"),
    [
        (
            lambda config: tampered(config, optimizer___target_="os.system"),
            ["optimizer._target_: 'os.system' is not allowed here; allowed: ", "vae_sweep.train.optimizers.Adam,"],
        ),
        (
            lambda config: tampered(
                config, data___target_="vae_sweep.train.optimizers.Adam"
            ),  # a real spec, wrong group
            [
                "data._target_: 'vae_sweep.train.optimizers.Adam' is not allowed here; allowed: ",
                "vae_sweep.train.data.Digits",
            ],
        ),
        (
            lambda config: "data: !!python/object/apply:os.system ['echo pwned']\n",
            ["is not plain YAML data"],
        ),
        (
            lambda config: tampered(config, config_version=99),
            ["config_version: this config was written for config version 99", "re-run it with the vae-sweep"],
        ),
        (lambda config: None, ["has no config.yaml artifact"]),
        (
            lambda config: BILLION_LAUGHS,
            ["is not plain YAML data (YAML aliases (*name) are refused", "line 2, column 8"],
        ),
    ],
    ids=["foreign-target", "target-from-another-group", "python-yaml-tag", "config-version", "no-config", "aliases"],
)
def test_a_tampered_or_missing_config_is_refused_and_nothing_is_trained(
    store, capsys, monkeypatch, make_text, expected
):
    uri, client, original = store
    copy_id = log_copy(client, original, config_text=make_text(download_config(client, original.info.run_id)))
    calls: list[str] = []
    monkeypatch.setattr(os, "system", calls.append)
    monkeypatch.setattr(
        "vae_sweep.reproduce.rerun.train_and_track", lambda *a, **k: pytest.fail("trained a refused config")
    )
    count = len(runs_in(uri))

    code, out, err = reproduce(capsys, copy_id, "--tracking-uri", uri)

    assert code == 2
    assert err.startswith(f"vae-reproduce: error: run {copy_id}") and err.count("\n") == 1, err
    for text in expected:
        assert text in err
    assert "Traceback" not in err + out
    assert len(runs_in(uri)) == count
    assert calls == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine can run a CUDA run")
def test_a_cuda_run_on_a_machine_without_cuda_is_refused_before_a_run_exists(store, capsys):
    uri, client, original = store
    copy_id = log_copy(
        client, original, config_text=tampered(download_config(client, original.info.run_id), trainer__device="cuda")
    )
    count = len(runs_in(uri))
    code, _, err = reproduce(capsys, copy_id, "--tracking-uri", uri)
    assert code == 2
    assert "trainer.device: cuda was asked for but torch sees no CUDA device" in err
    assert len(runs_in(uri)) == count


def test_a_logged_interpolation_is_text_not_a_lookup():
    config = {"tracking": {"run_name": "${oc.env:HOME}", "tags": ["${oc.env:HOME}"]}}
    assert OmegaConf.to_container(OmegaConf.create(literal(config)), resolve=True) == config


@pytest.mark.parametrize(
    ("where", "args", "expected"),
    [
        ("store", ["0123456789abcdef0123456789abcdef"], "no run '0123456789abcdef0123456789abcdef' in sqlite:///"),
        ("study", ["--study", "nope", "--best"], "no study 'nope' in experiment 'vae-sweep'; studies found: fixture"),
        ("study", ["--study", "fixture", "--trial", "99"], "study 'fixture' has no trial 99; its trials are 0-9"),
        ("study", ["--study", "fixture", "--best", "--experiment", "other"], "no experiment 'other' in this store"),
        ("missing", ["abc"], "typo.db (sqlite:///"),
    ],
    ids=["run", "study", "trial", "experiment", "store"],
)
def test_unknown_run_study_trial_or_store_exit_2_with_one_message(
    store, finished_study, tmp_path, capsys, where, args, expected
):
    uri = {"store": store[0], "study": finished_study.tracking_uri, "missing": f"sqlite:///{tmp_path}/typo.db"}[where]
    code, _, err = reproduce(capsys, *args, "--tracking-uri", uri)
    assert code == 2
    assert err.startswith("vae-reproduce: error: ") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "typo.db").exists()  # a mistyped store is not created


def test_usage_errors_exit_2(capsys):
    for args in ([], ["--study", "fixture"], ["abc", "--best"], ["abc", "--tolerance", "-1"]):
        code, _, err = reproduce(capsys, *args)
        assert code == 2, args
        assert "usage: vae-reproduce" in err


# ---------------------------------------------------------------- the vae-train command


def test_print_command_recreates_the_logged_config_through_vae_train(store, tmp_path, capsys):
    """As users do it: the printed line, split as a shell would, run by `vae-train ... --cfg job`."""
    uri, client, original = store
    train_exe = shutil.which("vae-train")
    if train_exe is None:
        pytest.skip("vae-train is not installed (pip install -e .)")
    code, out, err = reproduce(capsys, original.info.run_id, "--print-command", "--tracking-uri", uri)
    assert code == 0, err
    command = shlex.split(out)
    assert command[0] == "vae-train"
    assert "tracking.run_name='tiny run #1'" in command and "optimizer=adam" in command

    composed = subprocess.run(
        [train_exe, *command[1:], "--cfg", "job"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert composed.returncode == 0, composed.stderr
    assert yaml.safe_load(composed.stdout) == download_config(client, original.info.run_id)
    assert not (tmp_path / "mlflow.db").exists()


def test_overrides_of_a_sweep_trials_config_compose_back_to_it(finished_study, compose_config):
    child = next(r for r in runs_in(finished_study.tracking_uri) if r.data.tags.get("mlflow.parentRunId"))
    config = download_config(MlflowClient(finished_study.tracking_uri), child.info.run_id)
    composed = compose_config(*train_overrides(config))
    assert OmegaConf.to_container(composed, resolve=True) == config


def test_keys_the_option_file_lacks_or_adds_are_added_or_deleted(store, compose_config):
    _, client, original = store
    config = download_config(client, original.info.run_id)
    del config["optimizer"]["amsgrad"]  # logged before a field existed
    del config["config_version"]
    overrides = train_overrides(config)
    assert "~optimizer.amsgrad" in overrides and "~config_version" in overrides
    assert OmegaConf.to_container(compose_config(*overrides), resolve=True) == config


def test_an_option_this_vae_sweep_lacks_is_a_clear_error(store, capsys):
    uri, client, original = store
    config_text = tampered(download_config(client, original.info.run_id), optimizer__name="adamax")
    copy_id = log_copy(client, original, config_text=config_text)
    code, _, err = reproduce(capsys, copy_id, "--print-command", "--tracking-uri", uri)
    assert code == 2
    assert "optimizer.name: the run used option 'adamax', but this vae-sweep has no conf/optimizer/adamax.yaml" in err
    assert "options: adadelta, adagrad, adam, adamw," in err
    with pytest.raises(ConfigError, match=r"^optimizer\.name: "):
        train_overrides(yaml.safe_load(config_text))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -3,
        0.0,
        1e-10,
        0.1618191272832578,
        math.inf,
        [16, 32],
        [],
        [0.9, 0.999],
        "relu",
        "none",
        "null",
        "true",
        "1.5",
        "",
        "tiny run #1",
        "a,b",
        "x=y",
        "[1]",
        "it's",
        "back\\slash",
        "ends\\",
        "quote\\'s",
        "sqlite:////tmp/x/mlflow.db",
        "${oc.env:HOME}",
        ["a]b", "c d", "null", ""],
    ],
)
def test_format_value_reads_back_as_the_same_value(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([f"key={format_value(value)}"])[0]
    assert not parsed.is_sweep_override()
    resolved = OmegaConf.to_container(OmegaConf.create({"key": parsed.value()}), resolve=True)["key"]
    assert resolved == value and type(resolved) is type(value)


# ---------------------------------------------------------------- comparing


def test_the_verdict_ignores_timing_and_weighs_tolerance():
    same = [MetricDiff("test_loss", 41.5, 41.5), MetricDiff("train_seconds", 1.0, 9.0)]
    assert verdict(same, None, 0.0).label == "identical"
    off = [MetricDiff("test_loss", 40.0, 40.004)]
    assert verdict(off, None, 0.0).label == "different"
    assert verdict(off, None, 1e-3).label == "within_tolerance"
    assert verdict(off, None, 1e-5).exit_code == 1
    nan = [MetricDiff("test_loss", math.nan, math.nan)]
    assert verdict(nan, None, 0.0).identical


def test_compare_weights_is_bitwise():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    assert compare_weights(a, {k: v.clone() for k, v in a.items()}).equal
    nudged = compare_weights(a, {"w": torch.tensor([1.0, 2.0 + 2e-7]), "n": torch.tensor(3)})
    assert nudged.different == ("w",) and 0 < nudged.max_rel_diff < 1e-6
    negative_zero = compare_weights({"w": torch.tensor([0.0])}, {"w": torch.tensor([-0.0])})
    assert not negative_zero.equal  # equal as numbers, not bit for bit
    assert compare_weights(a, {"w": a["w"]}).max_rel_diff == math.inf


def test_number_ranges():
    assert number_ranges([7, 0, 1, 2, 5, 8]) == "0-2, 5, 7-8"


class Pwned:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def non_tensors(_: bytes) -> bytes:
    buffer = io.BytesIO()
    torch.save({"encoder.weight": "not a tensor"}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda data: data[: len(data) // 2], "refused by torch.load(weights_only=True)"),
        (non_tensors, "is not a state_dict of tensors"),
        (lambda _: pickle.dumps(Pwned()), "refused by torch.load(weights_only=True)"),
    ],
    ids=["truncated", "not-tensors", "malicious-pickle"],
)
def test_weights_that_cannot_be_compared_never_give_an_identical_verdict(store, capsys, monkeypatch, damage, why):
    uri, client, original = store
    copy_id = log_copy(
        client,
        original,
        config_text=yaml.safe_dump(download_config(client, original.info.run_id), sort_keys=False),
        weights=damage,
    )
    calls: list[str] = []
    monkeypatch.setattr(os, "system", calls.append)
    code, out, err = reproduce(capsys, copy_id, "--tracking-uri", uri)
    assert code == 1, out + err
    assert "Weights: not compared" in out and why in out
    assert "Verdict: NOT VERIFIED: the weights could not be compared" in out
    assert "Verdict: identical" not in out
    assert calls == []  # the malicious pickle was never executed
