"""A new MLflow store built in a child process while the sweep checks its configs: in place
only when the sweep uses it, never half made, and never outliving a killed sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.sweep_processes import child_gone_after_its_sweep_is_killed
from mlflow.tracking import MlflowClient

from vae_sweep.track.store_ahead import StoreAhead
from vae_sweep.track.store_template import CACHE_ENV

pytestmark = pytest.mark.slow  # each build imports MLflow and runs its migrations: seconds


@pytest.fixture(autouse=True)
def no_cached_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache without the migrated store, which a sweep would copy instead of building one."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("empty-cache")))


def files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_used_build_is_a_whole_mlflow_store_under_its_name(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ahead = StoreAhead.start(uri)
    assert ahead is not None
    ahead.use(uri)
    assert files(tmp_path) == ["mlflow.db"]
    client = MlflowClient(uri)
    assert client.get_experiment_by_name("Default") is not None  # every migration ran: MLflow uses it as is
    assert client.create_experiment("e")


def test_a_cancelled_or_unused_build_leaves_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cancelled = StoreAhead.start(uri)
    cancelled.cancel()  # a check refused the sweep
    assert cancelled.process.poll() is not None
    assert files(tmp_path) == []
    other = StoreAhead.start(uri)
    other.use(f"sqlite:///{tmp_path}/another.db")  # the checks settled on another store
    assert files(tmp_path) == []


def test_no_build_for_a_store_that_exists_or_is_not_a_local_file(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").write_bytes(b"")
    assert StoreAhead.start(f"sqlite:///{tmp_path}/mlflow.db") is None
    assert StoreAhead.start("http://127.0.0.1:5000") is None
    assert StoreAhead.start(f"sqlite:///{tmp_path}/missing/mlflow.db") is None
    assert StoreAhead.start(None) is None


def test_the_build_stops_when_its_sweep_is_killed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    make = f"from vae_sweep.track.store_ahead import StoreAhead\nahead = StoreAhead.start({uri!r})"
    assert child_gone_after_its_sweep_is_killed(make, wait_s=10)
    assert not (tmp_path / "mlflow.db").exists()
    again = StoreAhead.start(uri)  # the next sweep removes what the killed build left
    again.cancel()
    assert files(tmp_path) == []
