"""The study's budget under concurrency: workers in separate processes claim trials through a
real SQLite storage, and no trial may be claimed twice."""

from __future__ import annotations

import multiprocessing

import optuna

from vae_sweep.sweep.study import claim_trial, ensure_budget, make_storage


def claim_all(url: str, queue) -> None:
    storage = make_storage(url)
    claimed = []
    while claim := claim_trial(storage, "race", lambda _: optuna.load_study(study_name="race", storage=storage)):
        claimed.append(claim[0].number)
    queue.put(claimed)


def test_four_processes_claim_every_slot_exactly_once_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="race", storage=make_storage(url))
    assert ensure_budget(study, 120, created=True) == 120
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


def test_budget_is_topped_up_only_by_its_creator_or_a_larger_request(tmp_path):
    study = optuna.create_study(study_name="budget", storage=make_storage(f"sqlite:///{tmp_path}/optuna.db"))
    assert ensure_budget(study, 3, created=True) == 3
    assert ensure_budget(study, 3, created=False) == 0  # a second worker on the same command
    assert ensure_budget(study, 2, created=False) == 0  # a smaller budget never removes trials
    assert ensure_budget(study, 5, created=False) == 2  # raising n_trials adds the difference
    assert [t.state.name for t in study.trials] == ["WAITING"] * 5
