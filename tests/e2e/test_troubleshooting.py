"""docs/troubleshooting.md, run: its examples print what it says, and each fix it gives works.

Every section of the page names, in a `<!-- tested by: ... -->` comment, the tests that run its
recovery steps; the first test here keeps those names pointing at tests that exist. The
examples written as `$ vae-train ...` are run as written and must print every line shown. The
fixes not run elsewhere are run here, each after the problem it fixes: the refusal first, then
the documented way out.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
import torch
from helpers.in_process import vae_train
from helpers.mlflow_server import MlflowServer, free_port
from helpers.run_if import VAE_TRAIN, needs_vae_train, without_cuda
from helpers.sweep_processes import run, start
from helpers.tiny import TINY_SWEEP
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "troubleshooting.md"
DOCUMENTED_FOLDER = "/home/you/vae-first"  # where the page's examples pretend to run


def sections() -> dict[str, str]:
    """The page's `## ` sections: title -> text."""
    parts = re.split(r"^## (.+)$", PAGE.read_text(), flags=re.M)[1:]
    return dict(zip(parts[::2], parts[1::2], strict=True))


def code_blocks(text: str, language: str = "") -> list[str]:
    """The page's fenced blocks of ``language`` (none: plain output)."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def documented_examples() -> list[tuple[str, list[str]]]:
    """Each `$ vae-train ARGS` line of the page, with the output lines written under it."""
    examples = []
    for block in code_blocks(PAGE.read_text()):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, *output = chunk.strip("\n").splitlines()
            examples.append((command, [line.strip() for line in output if line.strip()]))
    return examples


@pytest.fixture
def no_tracking_variable(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VAE_SWEEP_DATA", raising=False)


def tiny_run(cwd: Path, *overrides: str) -> list[str]:
    """A single run of a second, its store (named in full: MLflow keeps one open store per URL
    in a process, which a relative URL would share between tests) and outputs in ``cwd``."""
    store = (
        []
        if any(override.startswith("tracking") for override in overrides)
        else [f"tracking.uri=sqlite:///{cwd}/mlflow.db"]
    )
    return [*TINY_SWEEP, "trainer.epochs=1", f"hydra.run.dir={cwd}/outputs", *store, *overrides]


def tiny_sweep(cwd: Path, *overrides: str) -> list[str]:
    """A one-trial `study=quick` sweep, its stores and outputs in ``cwd``."""
    sweep = ["-m", "study=quick", "hydra.sweeper.n_trials=1", "hydra.sweeper.plots=[]", *TINY_SWEEP]
    return [
        *sweep,
        "trainer.epochs=1",
        f"tracking.uri=sqlite:///{cwd}/mlflow.db",
        f"hydra.sweep.dir={cwd}/multirun",
        *overrides,
    ]


def test_every_section_names_the_tests_that_run_its_recovery():
    named = 0
    for title, text in sections().items():
        references = [
            ref.strip()
            for refs in re.findall(r"<!-- tested by: (.+?) -->", text, flags=re.S)
            for ref in refs.split(",")
        ]
        assert references, f"section {title!r} names no test of its recovery"
        for reference in references:
            file, _, name = reference.partition("::")
            path = REPO / file
            assert path.is_file(), f"section {title!r}: {file} does not exist"
            assert re.search(rf"^def {re.escape(name)}\(", path.read_text(), flags=re.M), (
                f"section {title!r}: no {reference}"
            )
            named += 1
    assert named >= len(sections())


@pytest.mark.parametrize(
    ("command", "output"),
    [
        pytest.param(command, output, id=command)
        for command, output in documented_examples()
        if command.startswith("vae-train ")
    ],
)
def test_each_documented_example_prints_what_the_page_shows(command, output, tmp_path, no_tracking_variable, capsys):
    if "trainer.device=cuda" in command and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = shlex.split(command)[1:]
    outcome = vae_train(tmp_path, argv, capsys)
    assert outcome.code == (2 if any(line.startswith("vae-train: error:") for line in output) else 1), outcome.text
    printed = outcome.text.replace(str(tmp_path), DOCUMENTED_FOLDER)
    missing = [line for line in output if line not in printed]
    assert not missing, printed
    assert "Traceback" not in printed
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


@pytest.mark.parametrize(
    ("problem", "refusal", "fix"),
    [
        pytest.param(
            ["+optimizer.momentum=0.9"],
            "optimizer.momentum: unknown key for 'adam'",
            ["optimizer=momentum", "optimizer.momentum=0.9"],
            id="a key of another option",
        ),
        pytest.param(
            ["tracking.uri=http://127.0.0.1:9"],
            "tracking.uri: cannot reach the MLflow tracking server at http://127.0.0.1:9",
            ["tracking=none"],
            id="no tracking server",
        ),
        pytest.param(
            ["tracking.uri=sqlite:///{cwd}/a_file/mlflow.db"],
            "is a file, not a folder",
            ["tracking.uri=sqlite:///{cwd}/runs/mlflow.db"],
            id="an unwritable store",
        ),
        pytest.param(
            ["trainer.device=cuda"],
            "trainer.device: cuda was asked for but torch sees no CUDA device",
            ["trainer.device=auto"],
            id="no GPU",
            marks=without_cuda,
        ),
    ],
)
def test_a_documented_fix_turns_the_refusal_into_a_finished_run(
    problem, refusal, fix, tmp_path, no_tracking_variable, capsys
):
    (tmp_path / "a_file").write_text("not a folder")
    given = [override.format(cwd=tmp_path) for override in problem]
    refused = vae_train(tmp_path, tiny_run(tmp_path, *given), capsys)
    assert refused.code == 2 and refusal in refused.error_lines()[0], refused.text
    fixed = vae_train(tmp_path, tiny_run(tmp_path, *(override.format(cwd=tmp_path) for override in fix)), capsys)
    assert fixed.code == 0, fixed.text
    assert "val_loss = " in fixed.out  # the objective, as a single run ends


@needs_vae_train
def test_a_tracking_variable_left_in_the_shell_is_named_and_unsetting_it_logs_locally(tmp_path, monkeypatch, capsys):
    args = [*TINY_SWEEP, "trainer.epochs=1", f"hydra.run.dir={tmp_path}/outputs"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    refused = vae_train(tmp_path, args, capsys)
    assert refused.code == 2, refused.text
    assert "tracking.uri: cannot reach the MLflow tracking server at http://127.0.0.1:9" in refused.err
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # A process of its own: MLflow keeps one store per URL in a process, and this one is relative.
    fixed = run([VAE_TRAIN, *args], tmp_path)  # without MLFLOW_TRACKING_URI
    assert fixed.returncode == 0, fixed.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # ./mlflow.db
    finished = client.search_runs([client.get_experiment_by_name("vae-sweep").experiment_id])
    assert [run.info.status for run in finished] == ["FINISHED"]


def test_an_optuna_storage_without_a_scheme_is_named_and_the_sqlite_url_works(tmp_path, no_tracking_variable, capsys):
    refused = vae_train(tmp_path, tiny_sweep(tmp_path, "hydra.sweeper.storage=optuna.db"), capsys)
    assert refused.error_lines() == [
        "vae-train: error: hydra.sweeper.storage: not a database URL: 'optuna.db' "
        "(e.g. sqlite:///optuna.db, postgresql://user@host/db)"
    ], refused.text
    assert not (tmp_path / "mlflow.db").exists()  # refused before any store is made
    fixed = vae_train(tmp_path, tiny_sweep(tmp_path, "hydra.sweeper.storage=sqlite:///optuna.db"), capsys)
    assert fixed.code == 0, fixed.text
    study = optuna.load_study(study_name="quick", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"]


def option_removals() -> list[list[str]]:
    """The commands the page gives to switch sampler or pruner: by a plain name, or dropping the
    options the new one does not take."""
    text = sections()["A sampler or pruner refuses an option"]
    blocks = code_blocks(text, "bash")
    assert len(blocks) == 2, blocks
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(command)[1:] for command in lines if command.strip()]


@pytest.mark.parametrize("argv", option_removals(), ids=" ".join)
def test_the_documented_option_removals_let_a_new_sampler_or_pruner_run(argv, tmp_path, no_tracking_variable, capsys):
    kept = [arg for arg in argv if not arg.startswith("~")]
    if kept != argv:  # without the removals, the study file's options are refused
        refused = vae_train(tmp_path, tiny_sweep(tmp_path, *kept[1:]), capsys)  # kept[0] is -m
        assert refused.code == 2 and "options.n_startup_trials" in refused.error_lines()[0], refused.text
    fixed = vae_train(tmp_path, tiny_sweep(tmp_path, *argv[1:]), capsys)
    assert fixed.code == 0, fixed.text
    study = optuna.load_study(study_name="quick", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"]


def test_cfg_shows_the_sweeper_settings_of_a_study_without_m(tmp_path, no_tracking_variable, capsys):
    refused = vae_train(tmp_path, ["-m", "study=techniques", "--cfg", "hydra"], capsys)
    assert refused.code != 0
    assert "Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified" in refused.text
    shown = vae_train(tmp_path, ["study=techniques", "--cfg", "hydra"], capsys)
    assert shown.code == 0, shown.text
    assert "study_name: techniques" in shown.out and "n_trials:" in shown.out


def test_a_diverged_run_is_found_by_the_documented_filter_and_a_lower_rate_trains(
    tmp_path, no_tracking_variable, capsys
):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    diverged = vae_train(tmp_path, tiny_run(tmp_path, "optimizer=sgd", "optimizer.lr=100"), capsys)
    assert diverged.code == 0, diverged.text  # a sweeper gets NaN and goes on
    assert "training diverged at epoch 1: nan_loss" in diverged.text
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("vae-sweep").experiment_id
    found = client.search_runs([experiment], filter_string="tags.failure_reason = 'nan_loss'")
    assert [run.info.status for run in found] == ["FAILED"]
    lower = vae_train(tmp_path, tiny_run(tmp_path, "optimizer=sgd", "optimizer.lr=0.01"), capsys)
    assert lower.code == 0, lower.text
    statuses = sorted(run.info.status for run in client.search_runs([experiment]))
    assert statuses == ["FAILED", "FINISHED"]


def test_a_sweep_stopped_by_failures_goes_on_once_the_cause_is_fixed(tmp_path, no_tracking_variable, capsys):
    budget = ["hydra.sweeper.n_trials=6", "hydra.sweeper.study_name=somefail", "optimizer=sgd"]
    stopped = vae_train(
        tmp_path, tiny_sweep(tmp_path, *budget, "hydra.sweeper.max_failure_rate=0.25", "optimizer.lr=1e6"), capsys
    )
    assert stopped.code == 1
    assert stopped.error_lines() == [
        "vae-train: error: more than 25% of the trials failed (3 FAIL, 3 WAITING); stopped early. "
        "Raise hydra.sweeper.max_failure_rate to go on"
    ], stopped.err
    assert "Traceback" not in stopped.text
    resumed = vae_train(
        tmp_path, tiny_sweep(tmp_path, *budget, "hydra.sweeper.max_failure_rate=1.0", "optimizer.lr=0.01"), capsys
    )
    assert resumed.code == 0, resumed.text
    study = optuna.load_study(study_name="somefail", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [trial.state.name for trial in study.trials] == ["FAIL"] * 3 + ["COMPLETE"] * 3
    reproduce = next(line for line in resumed.out.splitlines() if line.startswith("Reproduce: "))
    assert reproduce.count("optimizer.lr=0.01") == 1 and reproduce.count("optimizer=sgd") == 1, reproduce


def test_a_sweep_whose_trials_all_failed_starts_afresh_beside_the_old_study(tmp_path, no_tracking_variable, capsys):
    budget = ["hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=allfail", "optimizer=sgd"]
    failed = vae_train(tmp_path, tiny_sweep(tmp_path, *budget, "optimizer.lr=1e6"), capsys)
    assert failed.code == 1
    assert failed.error_lines() == ["vae-train: error: all 2 trials of study 'allfail' failed; see failure_reason"]
    again = vae_train(tmp_path, tiny_sweep(tmp_path, *budget, "optimizer.lr=0.01"), capsys)
    assert again.code == 1  # the budget is spent on the failures: nothing new is tried
    fresh = vae_train(tmp_path, tiny_sweep(tmp_path, *budget, "optimizer.lr=0.01", "hydra.sweeper.fresh=true"), capsys)
    assert fresh.code == 0, fresh.text
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/optuna.db")}
    (new,) = names - {"allfail"}
    assert re.fullmatch(r"allfail-\d{8}-\d{6}", new), names


def test_n_jobs_without_a_parallel_launcher_is_refused_naming_the_fix(tmp_path, no_tracking_variable, capsys):
    """The fix, the same sweep with hydra/launcher=joblib running two at a time, is the parallel
    sweep of tests/e2e/test_faults.py (its study file selects the joblib launcher)."""
    plain = ["hydra/sweeper=vae_sweep", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.plots=[]"]
    common = [*TINY_SWEEP, f"hydra.sweep.dir={tmp_path}/multirun", "optimizer.lr=interval(1e-3, 1e-2)"]
    refused = vae_train(tmp_path, ["-m", *plain, *common], capsys)
    assert refused.error_lines() == [
        "vae-train: error: hydra.sweeper.n_jobs: 2 parallel trials need a parallel launcher; add hydra/launcher=joblib"
    ], refused.text
    assert not (tmp_path / "multirun").exists()  # refused before anything ran


@pytest.mark.slow
@needs_vae_train
def test_a_sweep_waits_for_another_program_holding_the_database_and_goes_on_once_it_is_closed(tmp_path):
    """ "database is locked": another program's open write transaction on optuna.db; closing it
    within SQLite's wait lets the sweep go on by itself."""
    optuna.create_study(study_name="other", storage=f"sqlite:///{tmp_path}/optuna.db")  # a store a sweep made:
    with contextlib.closing(sqlite3.connect(tmp_path / "optuna.db")) as made:
        made.execute("PRAGMA journal_mode=WAL")  # which it leaves in write-ahead-log mode
    browser = sqlite3.connect(tmp_path / "optuna.db", isolation_level=None)
    browser.execute("BEGIN IMMEDIATE")  # what a database browser with unsaved edits holds
    try:
        second = start(
            [VAE_TRAIN, *tiny_sweep(tmp_path, "hydra.sweeper.study_name=locked", "hydra.sweeper.n_trials=2")], tmp_path
        )
        time.sleep(8)
        assert second.poll() is None  # waiting for the lock, not failing
    finally:
        browser.execute("ROLLBACK")  # the other program is closed
        browser.close()
    _out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "database is locked" not in err
    study = optuna.load_study(study_name="locked", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]


def get_by_name(port: int, host: str) -> int:
    """The status of one API call to the server on 127.0.0.1:PORT, addressed as ``host``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
        headers={"Host": host},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        assert error.code != 403 or b"Invalid Host header" in error.read()
        return error.code


@pytest.mark.slow
def test_a_server_refusing_its_host_name_accepts_it_once_the_name_is_allowed(tmp_path):
    port = free_port()
    server = MlflowServer(
        backend_uri=f"sqlite:///{tmp_path}/mlflow.db",
        folder=tmp_path,
        port=port,
        options=("--allowed-hosts", f"mlflow-host:{port},mlflow-host"),
    )
    server.start()
    try:
        assert get_by_name(port, f"other-host:{port}") == 403  # a name the server was not told of
        assert get_by_name(port, f"mlflow-host:{port}") == 200  # the name given to --allowed-hosts
    finally:
        server.stop()
