"""The study's budget under concurrency: workers in separate processes claim trials through a
real SQLite storage, and no trial may be claimed twice; processes that raise one study's budget
at once (SQLite and PostgreSQL) add each missing slot once."""

from __future__ import annotations

import logging
import multiprocessing

import optuna
import pytest
from omegaconf import OmegaConf

from vae_sweep.errors import ConfigError
from vae_sweep.names import BUDGET_ATTR
from vae_sweep.sweep.launchers import launches_locally, worker_count
from vae_sweep.sweep.locks import study_lock
from vae_sweep.sweep.owners import this_process
from vae_sweep.sweep.space import parse_search_space
from vae_sweep.sweep.study import check_space_fits, claim_trial, ensure_budget, make_storage

pytest_plugins = ["helpers.postgres"]
RAISERS = 4


def claim_all(url: str, queue) -> None:
    storage = make_storage(url)
    claimed = []
    study_for = lambda _: optuna.load_study(study_name="race", storage=storage)  # noqa: E731
    while claim := claim_trial(storage, "race", study_for, this_process("race")):
        claimed.append(claim[0].number)
    queue.put(claimed)


def test_four_processes_claim_every_slot_exactly_once_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="race", storage=make_storage(url))
    assert ensure_budget(study, 120) == 120
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=claim_all, args=(url, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    claims = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    numbers = sorted(n for claimed in claims for n in claimed)
    assert numbers == list(range(120))  # each slot once: no duplicates, none lost
    assert sum(1 for claimed in claims if claimed) >= 2  # the claims really raced


def test_the_budget_only_grows_and_a_half_added_one_is_completed(tmp_path):
    study = optuna.create_study(study_name="budget", storage=make_storage(f"sqlite:///{tmp_path}/optuna.db"))
    assert ensure_budget(study, 3) == 3
    assert ensure_budget(study, 3) == 0  # a second worker on the same command
    assert ensure_budget(study, 2) == 0  # a smaller budget never removes trials
    assert ensure_budget(study, 5) == 2  # raising n_trials adds the difference
    assert [t.state.name for t in study.trials] == ["WAITING"] * 5
    study.set_user_attr(BUDGET_ATTR, 8)  # what a run killed while adding 3 more slots leaves
    assert ensure_budget(study, 5) == 3  # the next run, even with the old n_trials, completes it
    assert len(study.trials) == 8


def raise_budget(url: str, n_trials: int, start, queue) -> None:
    """What each `vae-train -m ... hydra.sweeper.n_trials=N` does to the budget when it starts."""
    storage = make_storage(url)
    study = optuna.load_study(study_name="grow", storage=storage)
    start.wait()
    with study_lock(storage, "grow"):
        queue.put(ensure_budget(study, n_trials))


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/optuna.db"
    return request.getfixturevalue("fresh_postgres_url")


def test_processes_raising_one_budget_at_once_add_each_slot_once(storage_url):
    study = optuna.create_study(study_name="grow", storage=make_storage(storage_url))
    assert ensure_budget(study, 2) == 2
    context = multiprocessing.get_context("spawn")
    queue, start = context.Queue(), context.Event()
    raisers = [context.Process(target=raise_budget, args=(storage_url, 150, start, queue)) for _ in range(RAISERS)]
    for raiser in raisers:
        raiser.start()
    start.set()  # all at once, once every process has loaded the study
    added = sorted(queue.get(timeout=120) for _ in raisers)
    for raiser in raisers:
        raiser.join(timeout=60)
    assert added == [0] * (RAISERS - 1) + [148]  # one process added the missing slots; the others found none
    assert len(optuna.load_study(study_name="grow", storage=storage_url).trials) == 150


def test_no_more_workers_than_trials_left_and_a_warning_beyond_the_cores(caplog):
    caplog.set_level(logging.INFO)
    assert worker_count(8, 2, local=True, cores=16) == 2
    assert "hydra.sweeper.n_jobs=8, but 2 trial(s) left: starting 2 worker(s)" in caplog.text
    assert worker_count(4, 0, local=True, cores=16) == 1  # one, to wait for trials running elsewhere
    caplog.clear()
    assert worker_count(8, 100, local=True, cores=2) == 8
    assert "hydra.sweeper.n_jobs=8 is more than this machine's 2 cores: 8 workers will share them" in caplog.text
    caplog.clear()
    assert worker_count(8, 100, local=False, cores=2) == 8  # a cluster launcher: other machines' cores
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("launcher", "local"),
    [
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, True),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, True),
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}, True),
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}, False),
        ({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "ray": {"init": {}}}, True),
        (
            {
                "_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
                "ray": {"init": {"address": "127.0.0.1:6379"}},
            },
            True,
        ),
        (
            {
                "_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
                "ray": {"init": {"address": "10.0.0.5:6379"}},
            },
            False,
        ),
        ({"_target_": "hydra_plugins.hydra_ray_launcher.ray_aws_launcher.RayAWSLauncher"}, False),
    ],
)
def test_workers_of_launchers_on_this_machine_split_its_cores_and_a_clusters_do_not(launcher, local):
    assert launches_locally(OmegaConf.create(launcher)) is local


def test_a_resumed_study_may_move_bounds_but_not_change_a_choice_or_a_kind():
    study = optuna.create_study(study_name="space")
    trial = study.ask()
    parse_search_space({"optimizer": "choice(adam, rmsprop)", "optimizer.lr": "interval(1e-4, 1e-2)"}).sample(trial)
    study.tell(trial, 1.0)
    check_space_fits(
        study, parse_search_space({"optimizer": "choice(adam, rmsprop)", "optimizer.lr": "interval(1e-5, 1)"})
    )
    with pytest.raises(ConfigError) as changed:
        check_space_fits(study, parse_search_space({"optimizer": "choice(adam, sgd)"}))
    assert changed.value.key == "hydra.sweeper.params.optimizer"
    assert changed.value.message.startswith("study 'space' searched it as choice(adam, rmsprop), now choice(adam, sgd)")
    assert "hydra.sweeper.fresh=true" in changed.value.message
    with pytest.raises(ConfigError) as other_kind:
        check_space_fits(study, parse_search_space({"optimizer.lr": "choice(0.1, 0.01)"}))
    assert other_kind.value.key == "hydra.sweeper.params.optimizer.lr"
