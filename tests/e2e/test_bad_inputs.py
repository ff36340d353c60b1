"""Bad inputs (issue 6): each one stops before any training, with one clear message naming the
key and what is allowed, and a non-zero exit code; nothing is trained, logged or budgeted.

The project's conventions: a value, search-space, sweeper-setting or data mistake prints one
line ``vae-train: error: <key>: ...`` and exits 2; so does an option or key that does not exist
at all, which Hydra refuses while composing: the line names it, the closest one that exists and
all that do (``test_suggestions.py`` has the did-you-mean cases).

Where the code path is the same, cases run in-process: ``train_task(cfg)`` is the ``vae-train``
job itself, given a config composed as the command line composes it, and ``reproduce.main`` is
``vae-reproduce``. The entry points run for real (``vae-train -m`` and ``vae-reproduce`` in a
temporary folder) for what only they can show: Hydra's own report, the sweeper's checks, a
broken YAML file, the console script. (``test_cli.py`` runs plain ``vae-train`` on bad values.)

Already covered elsewhere with the same assertions, so not repeated here:

- unknown sampler, choice of a missing option, dropout range in a search space, reversed
  bounds on the command line, too few directions, end to end:
  ``test_sweep.py::test_bad_sweep_settings_stop_before_any_trial_with_one_clear_message``;
- reversed bounds, ``tag(log, interval(0, 1))``, bad grammar and every other search-space
  mistake, in-process: ``test_space.py::test_bad_search_spaces_raise_config_error_naming_the_entry``;
- unknown run id, study, trial, experiment or store for ``vae-reproduce``:
  ``test_reproduce.py::test_unknown_run_study_trial_or_store_exit_2_with_one_message``;
- a tampered ``config.yaml`` (foreign or misplaced ``_target_``, a Python YAML tag, another
  config version), in-process with ``os.system`` and training watched:
  ``test_reproduce.py::test_a_tampered_or_missing_config_is_refused_and_nothing_is_trained``;
- the IDX reader's own errors: ``test_data.py``; an unknown activation or objective, a foreign
  ``_target_`` in a composed config: ``test_config.py``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import sqlite3
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from helpers.environment import clean_env
from helpers.in_process import run_here
from helpers.run_if import VAE_REPRODUCE, VAE_TRAIN, needs_vae_reproduce, needs_vae_train
from helpers.tiny import TINY_SWEEP
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from vae_sweep.cli import config_groups, report_and_exit, train_task
from vae_sweep.errors import VaeSweepError
from vae_sweep.suggestions import unknown_name_line
from vae_sweep.sweep.distributions import SEARCHED
from vae_sweep.sweep.samplers_and_pruners import PRUNERS
from vae_sweep.train import idx
from vae_sweep.train.config import GROUPS, parse_run_config

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# A sweep that slipped past its checks should cost seconds, not minutes.
CHEAP_SWEEP = (*TINY_SWEEP, "hydra.sweeper.n_trials=1", "hydra.sweeper.plots=[]")

Compose = Callable[..., DictConfig]


# --- what "refused before anything happened" means ---------------------------------------------


def run(cwd: Path, *command: str) -> subprocess.CompletedProcess:
    """A command that must be refused; ``vae-train`` runs in this process (``refused``)."""
    if command[0] == VAE_TRAIN:
        return run_here(cwd, command[1:])
    return subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=300)


def table_rows(database: Path, table: str) -> list[tuple]:
    """Every row of ``table`` in a SQLite file; none when the file or the table does not exist."""
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        exists = connection.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
        return connection.execute(f"SELECT * FROM {table}").fetchall() if exists else []


def assert_nothing_trained(cwd: Path) -> None:
    """No MLflow run in the folder's default store, and no Optuna trial, not even a budgeted one."""
    assert table_rows(cwd / "mlflow.db", "runs") == []
    assert table_rows(cwd / "optuna.db", "trials") == []
    assert not list(cwd.glob("multirun/*/*/[0-9]*")), "a trial's job folder was made"


def one_error_line(stderr: str, program: str = "vae-train") -> str:
    """The single line a refused input prints, without its ``<program>: error: `` prefix."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{program}: error: "), stderr
    return lines[0].removeprefix(f"{program}: error: ")


@pytest.fixture
def job(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., str]:
    """``job(*overrides)``: the ``vae-train`` job on a config composed from ``overrides``, run in
    ``tmp_path`` and tracked in ``tmp_path/mlflow.db``; it must exit 2 before anything is
    trained. Returns its one error line without the prefix."""
    monkeypatch.chdir(tmp_path)
    # Absolute: MLflow keeps one store per URI in a process, so a relative one would outlive the chdir.
    store = f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"

    def refused(*overrides: str) -> str:
        cfg = compose_config(*overrides, store)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            try:
                train_task(cfg)
            except VaeSweepError as error:  # what vae-train (vae_sweep.cli.train_app) does with it
                report_and_exit("vae-train", error)
        assert exit_.value.code == 2
        assert_nothing_trained(tmp_path)
        return one_error_line(capsys.readouterr().err)

    return refused


# --- unknown options and keys, in every group -----------------------------------------------------


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def listed_options(message: str, group: str) -> list[str]:
    """The options Hydra lists under ``Available options in '<group>':``."""
    listing = message.split(f"Available options in '{group}':", 1)[1].split("Config search path:", 1)[0]
    return sorted(line.strip() for line in listing.splitlines() if line.strip())


ALL_GROUPS = [*GROUPS, "study"]


@pytest.mark.parametrize("group", ALL_GROUPS)
def test_unknown_option_of_every_group_is_refused_listing_exactly_its_options(group: str, compose_config: Compose):
    with pytest.raises(MissingConfigException) as info:
        compose_config(f"{group}=nope")
    message = str(info.value)
    assert f"Could not find '{group}/nope'" in message
    assert listed_options(message, group) == options(group)
    line = unknown_name_line(info.value)  # what vae-train prints: tracking=nope gets 'did you mean tracking=none?'
    assert line.startswith(f"{group}=nope: no such option")
    assert line.endswith(f"({group} has: {', '.join(options(group))})")


@needs_vae_train
def test_unknown_option_stops_a_sweep_with_one_line_listing_the_options(tmp_path: Path):
    out = run(tmp_path, VAE_TRAIN, "-m", "study=nope", *CHEAP_SWEEP)
    assert out.returncode == 2, out.stderr
    assert one_error_line(out.stderr) == f"study=nope: no such option (study has: {', '.join(options('study'))})"
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
    assert_nothing_trained(tmp_path)


def default_spec_fields(compose_config: Compose, group: str) -> list[str]:
    spec = getattr(parse_run_config(compose_config()), group)
    return sorted(field.name for field in dataclasses.fields(spec))


@pytest.mark.parametrize("group", GROUPS)
def test_unknown_key_in_every_group_names_it_and_lists_the_allowed_keys(
    group: str, compose_config: Compose, job: Callable[..., str]
):
    allowed = default_spec_fields(compose_config, group)
    message = job(f"+{group}.nope=1")
    assert message.startswith(f"{group}.nope: unknown key for ")
    assert message.endswith(f"allowed keys: {', '.join(allowed)}")


@pytest.mark.parametrize("group", GROUPS)
def test_unknown_key_without_plus_is_one_line_listing_the_keys_of_the_chosen_option(
    group: str, compose_config: Compose
):
    keys = sorted(str(key) for key in compose_config()[group] if not str(key).startswith("_"))
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(f"{group}.nope=1")
    assert f"Could not override '{group}.nope'" in str(info.value)  # Hydra's, with its '+' hint
    assert unknown_name_line(info.value) == f"{group}.nope: no such key ({group} has: {', '.join(keys)})"


def test_unknown_sweeper_setting_in_a_study_names_the_setting_meant(compose_config: Compose):
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("study=quick", "hydra.sweeper.n_trial=3")
    assert "Key 'n_trial' not in 'OptunaSweeperSettings'" in str(info.value.__cause__)
    line = unknown_name_line(info.value, groups=config_groups())
    assert line.startswith("hydra.sweeper.n_trial: no such key; did you mean hydra.sweeper.n_trials? ")
    assert "(hydra.sweeper has: collapse_patience, direction, " in line


@needs_vae_train
def test_an_added_unknown_sweeper_setting_is_refused_not_ignored(tmp_path: Path):
    # The unknown sampler stops the sweep either way; the message must name the typo first.
    out = run(tmp_path, VAE_TRAIN, "-m", "study=quick", "+hydra.sweeper.n_trial=3", "hydra.sweeper.sampler.name=no")
    assert out.returncode == 2, out.stderr
    line = one_error_line(out.stderr)
    assert line.startswith("hydra.sweeper.n_trial: unknown sweeper setting; did you mean hydra.sweeper.n_trials?; ")
    assert "allowed: study_name, storage, " in line and "_target_" not in line


# --- wrong types and out-of-range values ------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key", "fragments"),
    [
        ("optimizer.lr=abc", "optimizer.lr", ["'abc'", "Float"]),
        ("trainer.epochs=1.5", "trainer.epochs", ["'1.5'", "Integer"]),
        ("trainer.num_threads=two", "trainer.num_threads", ["'two'", "Integer"]),
        ("trainer.deterministic=maybe", "trainer.deterministic", ["'maybe'", "bool"]),
        ("model.encoder_hidden=foo", "model.encoder_hidden", ["a list such as [128,64]", "got 'foo'"]),
        ("model.decoder_hidden=64", "model.decoder_hidden", ["a list such as [256,128,64]", "got 64"]),
        ("model.encoder_hidden=null", "model.encoder_hidden", ["a list such as [128,64]", "got None"]),
        ("model.encoder_hidden=[64,x]", "model.encoder_hidden[1]", ["'x'", "Integer"]),
        ("optimizer.betas=0.9", "optimizer.betas", ["a list such as [0.9,0.999]", "got 0.9"]),
        ("model.encoder_norm=groupnorm", "model.encoder_norm", ["'groupnorm'", "none, batchnorm, layernorm"]),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_the_value_and_the_type_wanted(
    override: str, key: str, fragments: list[str], job: Callable[..., str]
):
    message = job(override)
    assert message.startswith(f"{key}: ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("overrides", "key", "allowed", "shown"),
    [
        (["optimizer.lr=0"], "optimizer.lr", "must be > 0", "0.0"),
        (["optimizer.lr=-1e-3"], "optimizer.lr", "must be > 0", "-0.001"),
        (["optimizer=sgd", "optimizer.lr=0"], "optimizer.lr", "must be > 0", "0.0"),
        (["model.encoder_dropout=1.0"], "model.encoder_dropout", "must be in [0, 1)", "1.0"),
        (["model.decoder_dropout=-0.1"], "model.decoder_dropout", "must be in [0, 1)", "-0.1"),
        (["model.latent_dim=0"], "model.latent_dim", "must be >= 1", "0"),
        (["model.latent_dim=-4"], "model.latent_dim", "must be >= 1", "-4"),
        (["model.encoder_hidden=[64,0]"], "model.encoder_hidden", "must be >= 1", "[64, 0]"),
        (["trainer.batch_size=0"], "trainer.batch_size", "must be >= 1", "0"),
        (["trainer.epochs=0"], "trainer.epochs", "must be >= 1", "0"),
        (["trainer.epochs=-3"], "trainer.epochs", "must be >= 1", "-3"),
        (["trainer.seed=-1"], "trainer.seed", "must be in [0, 2**32 - 1]", "-1"),
        (["trainer.seed=4294967296"], "trainer.seed", "must be in [0, 2**32 - 1]", "4294967296"),
        (
            ["data.split_seed=9223372036854775808"],
            "data.split_seed",
            "must be in [0, 2**63 - 1]",
            "9223372036854775808",
        ),
    ],
)
def test_a_value_out_of_range_names_the_key_the_range_and_the_value(
    overrides: list[str], key: str, allowed: str, shown: str, job: Callable[..., str]
):
    message = job(*overrides)
    assert message.startswith(f"{key}: ")
    assert allowed in message
    assert message.endswith(f"got {shown}")


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.lr=1e-12",
        "model.encoder_dropout=0.0",
        "model.decoder_dropout=0.999",
        "model.latent_dim=1",
        "model.encoder_hidden=[1]",
        "trainer.batch_size=1",
        "trainer.epochs=1",
        "trainer.seed=4294967295",
        "data.split_seed=9223372036854775807",
    ],
)
def test_the_edge_of_each_range_is_still_allowed(override: str, compose_config: Compose):
    parse_run_config(compose_config(override))  # the refusals above are not off by one


# --- sweeper settings and study files (the sweeper's checks only run in a real sweep) -----------


def sweep(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run(cwd, VAE_TRAIN, "-m", *overrides, *CHEAP_SWEEP)


@needs_vae_train
def test_unknown_pruner_lists_the_pruners(tmp_path: Path):
    out = sweep(tmp_path, "study=quick", "hydra.sweeper.pruner.name=bogus")
    assert out.returncode == 2, out.stderr
    message = one_error_line(out.stderr)
    assert message == f"hydra.sweeper.pruner.name: unknown pruner 'bogus'; choose one of {', '.join(PRUNERS)}"
    assert_nothing_trained(tmp_path)


@needs_vae_train
def test_a_pruner_on_a_multi_objective_study_is_refused(tmp_path: Path):
    out = sweep(tmp_path, "study=pareto", "hydra.sweeper.pruner.name=median")
    assert out.returncode == 2, out.stderr
    message = one_error_line(out.stderr)
    assert message.startswith("hydra.sweeper.pruner.name: pruner 'median' cannot be used with several objectives")
    assert message.endswith("use pruner none")
    assert_nothing_trained(tmp_path)


@needs_vae_train
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.sweeper.heartbeat_interval=-1", "must be >= 0 seconds (0 turns heartbeats off), got -1"),
        ("hydra.sweeper.grace_period=0", "must be > 0 seconds or null (twice the heartbeat interval), got 0"),
        ("hydra.sweeper.max_retry=-1", "must be >= 0, got -1"),
        (
            "hydra.sweeper.n_trials=1000000000000",
            "must be in [1, 100,000] (each trial is a row written before the sweep starts), got 1000000000000",
        ),
        (
            "hydra.launcher._target_=os.system",
            "'os.system' is not a Hydra launcher; pick one with hydra/launcher=basic, joblib, submitit_local, "
            "submitit_slurm or ray (their plugins installed)",
        ),
    ],
)
def test_sweeper_settings_out_of_range_are_refused_before_anything_is_written(
    tmp_path: Path, override: str, message: str
):
    out = run(tmp_path, VAE_TRAIN, "-m", "study=quick", *CHEAP_SWEEP, override)  # last: it wins
    assert out.returncode == 2, out.stderr
    assert one_error_line(out.stderr) == f"{override.split('=')[0]}: {message}"
    assert_nothing_trained(tmp_path)


def study_folder(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> str:
    """A config folder of the user's with ``study/<name>.yaml``; returns its searchpath override."""
    (tmp_path / "my_conf" / "study").mkdir(parents=True)
    (tmp_path / "my_conf" / "study" / f"{name}.yaml").write_text(text, encoding=encoding)
    return f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]"


STUDY_HEADER = """\
# @package _global_
defaults:
  - override /hydra/sweeper: vae_sweep
hydra:
  sweeper:
    n_trials: 1
    params:
"""


@needs_vae_train
def test_a_study_file_that_is_not_yaml_is_named_with_its_line(tmp_path: Path):
    searchpath = study_folder(tmp_path, "broken", STUDY_HEADER + "      optimizer.lr: [1e-4, 1e-2\n")
    out = sweep(tmp_path, "study=broken", searchpath)
    assert out.returncode == 2, out.stderr
    message = one_error_line(out.stderr)
    where = f"{tmp_path / 'my_conf' / 'study' / 'broken.yaml'}, line {STUDY_HEADER.count(chr(10)) + 1}, column 21"
    assert message.startswith(f"{where}: not valid YAML: ")  # where the unclosed '[' is
    assert "expected ',' or ']'" in message
    assert_nothing_trained(tmp_path)


@needs_vae_train
def test_a_study_file_that_is_not_utf8_is_named(tmp_path: Path):
    searchpath = study_folder(tmp_path, "latin", "# réglages\n" + STUDY_HEADER, encoding="latin-1")
    out = sweep(tmp_path, "study=latin", searchpath)
    assert out.returncode == 2, out.stderr
    message = one_error_line(out.stderr)
    assert message.startswith(f"{tmp_path / 'my_conf' / 'study' / 'latin.yaml'}: not UTF-8 text (")
    assert message.endswith("save it as UTF-8")
    assert_nothing_trained(tmp_path)


@needs_vae_train
def test_a_study_param_in_bad_grammar_names_the_entry_and_the_grammar(tmp_path: Path):
    searchpath = study_folder(tmp_path, "typo", STUDY_HEADER + "      optimizer.lr: tag(log, interval(1e-4, 1e-2)\n")
    out = sweep(tmp_path, "study=typo", searchpath)
    assert out.returncode == 2, out.stderr
    message = one_error_line(out.stderr)
    assert message.startswith("hydra.sweeper.params.optimizer.lr: 'optimizer.lr=tag(log, interval(1e-4, 1e-2)' ")
    assert "is not valid Hydra override grammar" in message and SEARCHED in message
    assert_nothing_trained(tmp_path)


# --- data ---------------------------------------------------------------------------------------


def write_idx(path: Path, images: torch.Tensor, *, magic: int = idx.IDX_IMAGE_MAGIC, cut: int = 0) -> None:
    """uint8 ``(n, rows, cols)`` images as a gzipped IDX file, with another magic or ``cut`` bytes short."""
    n, rows, cols = images.shape
    payload = struct.pack(">IIII", magic, n, rows, cols) + images.numpy().tobytes()
    path.write_bytes(gzip.compress(payload[: len(payload) - cut]))


def mnist_folder(root: Path, *, magic: int = idx.IDX_IMAGE_MAGIC, cut: int = 0) -> Path:
    """A small MNIST-format folder whose training file has ``magic`` and is ``cut`` bytes short."""
    root.mkdir()
    images = torch.randint(0, 256, (20, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    write_idx(root / idx.IDX_TRAIN_FILE, images, magic=magic, cut=cut)
    write_idx(root / idx.IDX_TEST_FILE, images[:5])
    return root / idx.IDX_TRAIN_FILE


def mnist(root: Path, *overrides: str) -> list[str]:
    return ["data=mnist", f"data.root={root}", "data.val_size=5", "trainer.epochs=1", *overrides]


def test_a_missing_mnist_folder_names_the_files_the_folder_and_the_switch(tmp_path: Path, job: Callable[..., str]):
    folder = tmp_path / "nowhere"
    message = job(*mnist(folder, "data.download=false"))
    assert message.startswith(f"mnist: missing {idx.IDX_TRAIN_FILE}, {idx.IDX_TEST_FILE} in {folder} ")
    assert "(data.download=false)" in message
    assert idx.MIRRORS["mnist"] + idx.IDX_TRAIN_FILE in message


@needs_vae_train
def test_missing_data_stops_a_sweep_before_its_first_trial(tmp_path: Path):
    folder = tmp_path / "nowhere"
    sweep = ["-m", *mnist(folder, "data.download=false"), "hydra/sweeper=vae_sweep", "hydra.sweeper.n_trials=1"]
    out = run(tmp_path, VAE_TRAIN, *sweep, "optimizer.lr=choice(0.001,0.01)")
    assert out.returncode == 2, out.stderr
    assert one_error_line(out.stderr).startswith(f"mnist: missing {idx.IDX_TRAIN_FILE}")
    assert_nothing_trained(tmp_path)


@pytest.mark.parametrize(
    ("corruption", "checksum", "fragments"),
    [
        ({"magic": 0x00000801}, "false", ["not an IDX image file: magic number 0x00000801, expected 0x00000803"]),
        ({"cut": 7}, "false", ["header promises 20 x 4 x 4 = 320 bytes of pixels, but the file holds 313"]),
        (
            {},
            "true",
            [
                "SHA-256 mismatch: expected " + idx.CHECKSUMS["mnist"][idx.IDX_TRAIN_FILE],
                "data.verify_checksum=false",
            ],
        ),
    ],
    ids=["wrong-magic", "truncated", "checksum"],
)
def test_corrupt_mnist_files_are_refused_naming_the_file_before_a_run_exists(
    corruption: dict, checksum: str, fragments: list[str], tmp_path: Path, job: Callable[..., str]
):
    train_file = mnist_folder(tmp_path / "mnist", **corruption)
    message = job(*mnist(tmp_path / "mnist", f"data.verify_checksum={checksum}"))
    assert message.startswith(f"{train_file}: ")
    for fragment in fragments:
        assert fragment in message
    if checksum == "true":
        assert hashlib.sha256(train_file.read_bytes()).hexdigest() in message  # what the file really is


# --- vae-reproduce ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoggedRuns:
    """FINISHED runs in an MLflow store, logged without training: only what vae-reproduce reads."""

    uri: str
    database: Path
    foreign_target: str  # config.yaml names builtins.exec as its optimizer
    missing_data: str  # config.yaml reads MNIST from a folder that does not exist


@pytest.fixture(scope="module")
def logged_runs(
    tmp_path_factory: pytest.TempPathFactory, compose_config: Compose, tiny_overrides: tuple[str, ...]
) -> LoggedRuns:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from vae_sweep.names import FINAL_METRICS

    folder = tmp_path_factory.mktemp("logged_runs")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("vae-sweep", artifact_location=(folder / "artifacts").as_uri())

    def logged(cfg: DictConfig, **changes: str) -> str:
        config = OmegaConf.to_container(cfg, resolve=True)
        for key, value in changes.items():
            config[key]["_target_"] = value
        run_id = client.create_run(experiment).info.run_id
        client.log_text(run_id, yaml.safe_dump(config), "config.yaml")
        client.log_batch(run_id, metrics=[Metric(name, 1.0, 0, 1) for name in FINAL_METRICS])
        client.set_terminated(run_id, "FINISHED")
        return run_id

    missing = folder / "no_mnist_here"
    return LoggedRuns(
        uri=uri,
        database=folder / "mlflow.db",
        foreign_target=logged(compose_config(*tiny_overrides, "tracking=mlflow"), optimizer="builtins.exec"),
        missing_data=logged(
            compose_config("data=mnist", f"data.root={missing}", "data.download=false", "data.val_size=5")
        ),
    )


@pytest.mark.slow  # about 7 s: vae-reproduce imports torch and MLflow
@needs_vae_reproduce
def test_vae_reproduce_refuses_a_foreign_target_and_trains_nothing(logged_runs: LoggedRuns, tmp_path: Path):
    before = table_rows(logged_runs.database, "runs")

    out = run(tmp_path, VAE_REPRODUCE, logged_runs.foreign_target, "--tracking-uri", logged_runs.uri)

    assert out.returncode == 2, out.stderr
    message = one_error_line(out.stderr, "vae-reproduce")
    assert "optimizer._target_: 'builtins.exec' is not allowed here; allowed: " in message
    assert "vae_sweep.train.optimizers.Adam" in message and "vae_sweep.train.optimizers.SGD" in message
    assert out.stdout == ""  # no "Reproducing ..." report: nothing was re-run
    assert table_rows(logged_runs.database, "runs") == before


def test_vae_reproduce_refuses_missing_data_before_a_new_run_exists(
    logged_runs: LoggedRuns, capsys: pytest.CaptureFixture[str]
):
    from vae_sweep.cli import reproduce

    before = table_rows(logged_runs.database, "runs")
    capsys.readouterr()

    code = reproduce([logged_runs.missing_data, "--tracking-uri", logged_runs.uri])

    assert code == 2
    message = one_error_line(capsys.readouterr().err, "vae-reproduce")
    assert message.startswith(f"cannot re-run {logged_runs.missing_data} here: mnist: missing {idx.IDX_TRAIN_FILE}")
    assert "(data.download=false)" in message
    assert table_rows(logged_runs.database, "runs") == before  # no FAILED reproduction left behind
