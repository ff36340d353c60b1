"""New local MLflow stores copied from one migrated store kept in the cache: migrated once, each
copy a store MLflow opens as its own, and a damaged or missing cache never in the way."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow.store.db.utils
import pytest
from mlflow.tracking import MlflowClient

from vae_sweep.track import store_template
from vae_sweep.track.store_ahead import StoreAhead
from vae_sweep.track.store_template import CACHE_ENV, is_empty_store, template_path
from vae_sweep.track.stores import prepare_mlflow_store

pytestmark = pytest.mark.slow  # the first store of each test runs MLflow's migrations: seconds


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def no_migrations(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(engine) -> None:
        raise AssertionError("MLflow's migrations ran")

    monkeypatch.setattr(mlflow.store.db.utils, "_initialize_tables", refuse)


def make_store(folder: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """A new store in ``folder``, opened from there as a sweep started there would."""
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    uri = f"sqlite:///{folder}/mlflow.db"
    prepare_mlflow_store(uri)
    return MlflowClient(uri)


def test_the_first_new_store_is_migrated_and_cached_and_the_next_is_a_copy(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_store(tmp_path / "a", monkeypatch)
    template = template_path()
    assert template is not None and template.parent == cache and is_empty_store(template)
    no_migrations(monkeypatch)
    second = make_store(tmp_path / "b", monkeypatch)
    for client, folder in ((first, tmp_path / "a"), (second, tmp_path / "b")):
        default = client.get_experiment_by_name("Default")  # made by MLflow where the store is opened
        assert default is not None and default.artifact_location.startswith(str(folder))
        run = client.create_run(client.create_experiment("e"))
        client.log_metric(run.info.run_id, "val_loss", 1.5, step=1)
        assert client.get_metric_history(run.info.run_id, "val_loss")[0].value == 1.5
    assert is_empty_store(template)  # a copy's runs never reach the template


@pytest.mark.parametrize("damage", [b"not a database", b""])
def test_a_damaged_template_is_removed_and_the_store_migrated(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes
) -> None:
    cache.mkdir()
    template = template_path()
    template.write_bytes(damage)
    client = make_store(tmp_path / "a", monkeypatch)
    assert client.get_experiment_by_name("Default") is not None
    assert is_empty_store(template)  # built again from the migrated store


def test_a_cache_that_cannot_be_written_only_costs_the_speed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv(CACHE_ENV, str(blocked / "cache"))
    client = make_store(tmp_path / "a", monkeypatch)
    assert client.get_experiment_by_name("Default") is not None
    assert sorted(os.listdir(tmp_path / "a")) == ["mlflow.db"]


def test_no_child_builds_a_store_the_template_makes(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ahead = StoreAhead.start(uri)  # nothing cached yet: a child migrates
    assert ahead is not None
    ahead.cancel()
    make_store(tmp_path / "a", monkeypatch)
    assert StoreAhead.start(uri) is None


def test_the_template_is_named_by_mlflows_migrations(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = template_path()
    listing = os.listdir
    monkeypatch.setattr(store_template.os, "listdir", lambda path: [*listing(path), "0123_a_new_migration.py"])
    assert template_path() not in (None, installed)
