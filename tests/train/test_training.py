"""The training loop: every config option trains, metrics, reproducibility, schedules, callbacks."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from vae_sweep.errors import TrainingDiverged
from vae_sweep.names import EPOCH_METRICS, FINAL_METRICS, LATENT_METRICS
from vae_sweep.train.best_epoch import BestEpoch
from vae_sweep.train.checkpoint import fingerprint, load_checkpoint
from vae_sweep.train.config import RunConfig, parse_run_config
from vae_sweep.train.data import Binarize
from vae_sweep.train.loop import TrainResult, check_finite, train
from vae_sweep.train.losses import gaussian_kl
from vae_sweep.train.models import Activation, Likelihood, Normalization
from vae_sweep.train.progress import EpochProgress, run_summary
from vae_sweep.train.schedules import Constant, Exponential, LRSchedule, OneCycle, Plateau, SchedulerSpec

CONF_DIR = Path(str(files("vae_sweep.conf")))  # the packaged config groups
TIMING_METRICS = {"samples_per_sec", "train_seconds"}

MakeConfig = Callable[..., RunConfig]


def options(group: str) -> list[str]:
    """The option files of a config group, as Hydra finds them."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def case(*overrides: str) -> pytest.param:
    return pytest.param(overrides, id=" ".join(overrides))


OPTION_CASES = [
    *(case(f"optimizer={name}") for name in options("optimizer")),
    *(case(f"scheduler={name}") for name in options("scheduler")),
    *(case(f"scheduler={name}", "scheduler.warmup_epochs=1") for name in options("scheduler")),
    *(case(f"regularization={name}") for name in options("regularization")),
    *(case(f"model.activation={kind.value}") for kind in Activation),
    *(case(f"model.{part}_norm={kind.value}") for part in ("encoder", "decoder") for kind in Normalization),
    case("model.encoder_dropout=0.3", "model.decoder_dropout=0.3"),
    case("model.likelihood=bernoulli"),
    case("model.likelihood=gaussian", "model.gaussian_std=0.5"),
    case("model.likelihood=gaussian", "model.learn_variance=true"),
    *(case(f"data.binarize={mode.value}") for mode in Binarize),
    case("regularization.weight_decay=0.01", "regularization.grad_clip_norm=1.0"),
]


def assert_complete(result: TrainResult, epochs: int) -> None:
    assert len(result.history) == epochs
    assert set(EPOCH_METRICS) | set(FINAL_METRICS) <= result.metrics.keys()
    for name in (*EPOCH_METRICS, *FINAL_METRICS):
        assert math.isfinite(result.metrics[name]), name


@pytest.mark.parametrize("overrides", OPTION_CASES)
def test_every_option_trains_one_epoch(overrides: tuple[str, ...], tiny_config: MakeConfig) -> None:
    assert_complete(train(tiny_config(*overrides)), epochs=1)


@pytest.mark.parametrize("preset", options("model"))
def test_every_model_preset_trains_one_epoch(
    preset: str, compose_config: Callable, tiny_overrides: tuple[str, ...]
) -> None:
    run_overrides = ["debug=tiny_data" if o == "debug=tiny" else o for o in tiny_overrides]  # the preset's own net
    config = parse_run_config(compose_config(*run_overrides, f"model={preset}"))
    result = train(config)
    assert_complete(result, epochs=1)
    expected = OmegaConf.load(CONF_DIR / "model" / f"{preset}.yaml")
    assert result.model.latent_dim == expected.latent_dim
    if "encoder_hidden" in expected:  # an MLP: one Linear per hidden layer
        widths = [layer.out_features for layer in result.model.encoder if isinstance(layer, nn.Linear)]
        assert widths == list(expected.encoder_hidden)
    else:  # a conv net: its stride-2 convolutions have the preset's channels
        strided = [
            layer for layer in result.model.encoder.modules() if isinstance(layer, nn.Conv2d) and layer.stride == (2, 2)
        ]
        resnet = "downsamplings" in expected  # one width throughout, as van den Oord et al. have
        per_layer = [expected.channels] * expected.downsamplings if resnet else list(expected.channels)
        assert [layer.out_channels for layer in strided] == per_layer


# --- the options reach the network -----------------------------------------------------------

ACTIVATION_MODULES = {
    Activation.relu: nn.ReLU,
    Activation.leaky_relu: nn.LeakyReLU,
    Activation.prelu: nn.PReLU,
    Activation.elu: nn.ELU,
    Activation.gelu: nn.GELU,
    Activation.silu: nn.SiLU,
    Activation.tanh: nn.Tanh,
    Activation.softplus: nn.Softplus,
}


def test_activation_table_covers_every_option() -> None:
    assert set(ACTIVATION_MODULES) == set(Activation)


@pytest.mark.parametrize("kind", list(Activation), ids=lambda kind: kind.value)
def test_activation_is_used_in_every_hidden_block(kind: Activation, tiny_config: MakeConfig) -> None:
    model = tiny_config(f"model.activation={kind.value}", "model.decoder_hidden=[32,16]").model.build((64,))
    for part, hidden in ((model.encoder, 1), (model.decoder, 2)):
        found = [layer for layer in part if isinstance(layer, ACTIVATION_MODULES[kind])]
        assert len(found) == hidden


@pytest.mark.parametrize(
    ("kind", "module"), [("batchnorm", nn.BatchNorm1d), ("layernorm", nn.LayerNorm)], ids=["batchnorm", "layernorm"]
)
def test_normalization_goes_where_asked(kind: str, module: type[nn.Module], tiny_config: MakeConfig) -> None:
    model = tiny_config(f"model.encoder_norm={kind}").model.build((64,))
    assert any(isinstance(layer, module) for layer in model.encoder)
    assert not any(isinstance(layer, (nn.BatchNorm1d, nn.LayerNorm)) for layer in model.decoder)


def test_dropout_goes_where_asked(tiny_config: MakeConfig) -> None:
    model = tiny_config("model.decoder_dropout=0.3").model.build((64,))
    rates = [layer.p for layer in model.decoder if isinstance(layer, nn.Dropout)]
    assert rates == [0.3]
    assert not any(isinstance(layer, nn.Dropout) for layer in model.encoder)


def test_learned_variance_is_trained_and_fixed_variance_is_not(tiny_config: MakeConfig) -> None:
    learned = train(tiny_config("model.likelihood=gaussian", "model.learn_variance=true", "model.gaussian_std=0.5"))
    assert isinstance(learned.model.log_std, nn.Parameter)
    assert any(p is learned.model.log_std for p in learned.model.parameters())
    assert not torch.allclose(learned.model.log_std, torch.full((1, 8, 8), math.log(0.5)))
    fixed = train(tiny_config("model.likelihood=gaussian", "model.gaussian_std=0.5"))
    assert not any(name.endswith("log_std") for name, _ in fixed.model.named_parameters())
    torch.testing.assert_close(fixed.model.output_log_scale(), torch.full((1, 8, 8), math.log(0.5)))


@pytest.mark.parametrize(
    ("overrides", "likelihood"),
    [((), Likelihood.bernoulli), (("data.channels=3",), Likelihood.discretized_logistic)],
    ids=["gray", "rgb"],
)
def test_an_mlp_with_likelihood_auto_takes_the_one_that_fits_the_images(
    tiny_config: MakeConfig, overrides: tuple[str, ...], likelihood: Likelihood
) -> None:
    result = train(tiny_config("model.likelihood=auto", *overrides))
    assert result.model.likelihood is likelihood
    learned = dict(result.model.named_parameters()).get("log_std")
    assert (learned is not None) == (likelihood is Likelihood.discretized_logistic)  # its scale is learned
    assert math.isfinite(result.metrics["test_bpd"])


# --- metrics ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_epochs(tiny_config: MakeConfig) -> TrainResult:
    return train(tiny_config("trainer.epochs=3"))


def test_result_has_every_documented_metric(three_epochs: TrainResult) -> None:
    assert_complete(three_epochs, epochs=3)
    for entry in three_epochs.history:
        assert set(EPOCH_METRICS) <= entry.keys()
    assert three_epochs.metrics.items() >= three_epochs.history[-1].items()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_loss_is_reconstruction_plus_kl(split: str, three_epochs: TrainResult) -> None:
    entries = [three_epochs.metrics] if split == "test" else three_epochs.history
    for metrics in entries:
        assert metrics[f"{split}_loss"] == pytest.approx(metrics[f"{split}_recon"] + metrics[f"{split}_kl"])
        assert metrics[f"{split}_kl"] >= 0


def test_final_metrics_are_in_range(three_epochs: TrainResult) -> None:
    metrics = three_epochs.metrics
    assert 0 <= metrics["active_units"] <= 4 and metrics["active_units"] == int(metrics["active_units"])
    assert metrics["samples_per_sec"] > 0
    assert metrics["train_seconds"] > 0


def test_training_lowers_the_loss(three_epochs: TrainResult) -> None:
    history = three_epochs.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_eval_every_skips_validation_but_not_on_the_last_epoch(tiny_config: MakeConfig) -> None:
    history = train(tiny_config("trainer.epochs=3", "trainer.eval_every=2")).history
    assert ["val_loss" in entry for entry in history] == [False, True, True]


# --- reproducibility and divergence ----------------------------------------------------------


def comparable(result: TrainResult) -> dict[str, float]:
    return {name: value for name, value in result.metrics.items() if name not in TIMING_METRICS}


def test_same_seed_is_bit_identical_and_another_seed_differs(tiny_config: MakeConfig) -> None:
    # Dropout and dynamic binarization draw random numbers too.
    overrides = (
        "trainer.epochs=2",
        "trainer.deterministic=true",
        "data.binarize=dynamic",
        "model.encoder_dropout=0.2",
    )
    first = train(tiny_config(*overrides, "trainer.seed=7"))
    second = train(tiny_config(*overrides, "trainer.seed=7"))
    assert comparable(first) == comparable(second)
    assert first.history == second.history
    for before, after in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(before, after)
    other = train(tiny_config(*overrides, "trainer.seed=8"))
    differing = {name for name, value in comparable(other).items() if value != comparable(first)[name]}
    assert {"train_loss", "val_loss", "test_loss", "test_iwae"} <= differing


def test_huge_sgd_step_diverges_with_nan_loss(tiny_config: MakeConfig) -> None:
    calls: list[int] = []

    class Recorder:
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            calls.append(epoch)

    with pytest.raises(TrainingDiverged) as info:
        train(tiny_config("optimizer=sgd", "optimizer.lr=1e6", "trainer.epochs=3"), [Recorder()])
    assert info.value.reason == "nan_loss"
    assert info.value.epoch == 1
    assert not math.isfinite(info.value.metrics["train_loss"])  # the failing epoch, for the tracker
    assert calls == []  # a diverged epoch is not reported as a result


def test_a_finite_loss_beyond_any_real_model_is_diverged_too() -> None:
    """Weights that blew up give 1e23 nats, finite: seen in replicates, where it was one option's mean."""
    check_finite({"val_loss": 4e4, "samples_per_sec": 1e13, "lr": 1e13}, 6)  # a spike, and non-loss metrics
    with pytest.raises(TrainingDiverged) as info:
        check_finite({"train_loss": 27.1, "val_loss": 4.3e23, "val_kl": 2e13}, 10)
    assert (info.value.reason, info.value.epoch) == ("nan_loss", 10)
    assert info.value.detail == "exploded: val_kl 2e+13, val_loss 4.3e+23 > 1e+12"


# --- torch settings --------------------------------------------------------------------------


@pytest.fixture
def restore_torch_settings() -> Iterator[None]:
    saved = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.set_num_threads(saved[1])


class SettingsProbe:
    """Records torch's thread count and determinism flag as seen during training."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bool]] = []

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.usefixtures("restore_torch_settings")
def test_train_restores_threads_and_determinism(deterministic: bool, tiny_config: MakeConfig) -> None:
    torch.set_num_threads(3)
    torch.use_deterministic_algorithms(not deterministic)
    probe = SettingsProbe()
    train(tiny_config("trainer.num_threads=1", f"trainer.deterministic={str(deterministic).lower()}"), [probe])
    assert probe.seen == [(1, deterministic)]
    assert torch.get_num_threads() == 3
    assert torch.are_deterministic_algorithms_enabled() is (not deterministic)


@pytest.mark.usefixtures("restore_torch_settings")
def test_train_restores_settings_after_divergence(tiny_config: MakeConfig) -> None:
    torch.set_num_threads(3)
    torch.use_deterministic_algorithms(False)
    config = tiny_config("optimizer=sgd", "optimizer.lr=1e6", "trainer.num_threads=1", "trainer.deterministic=true")
    with pytest.raises(TrainingDiverged):
        train(config)
    assert torch.get_num_threads() == 3
    assert not torch.are_deterministic_algorithms_enabled()


# --- callbacks -------------------------------------------------------------------------------


def test_callback_sees_each_epoch_once_with_its_metrics(tiny_config: MakeConfig) -> None:
    calls: list[tuple[int, dict[str, float]]] = []

    class Recorder:
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            calls.append((epoch, dict(metrics)))

    result = train(tiny_config("trainer.epochs=3"), [Recorder(), Recorder()])
    assert [epoch for epoch, _ in calls] == [1, 1, 2, 2, 3, 3]
    assert [metrics for _, metrics in calls[::2]] == result.history


def test_exception_from_callback_stops_training(tiny_config: MakeConfig) -> None:
    class Prune(Exception):
        pass

    epochs: list[int] = []

    class Pruner:
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            epochs.append(epoch)
            if epoch == 2:
                raise Prune

    with pytest.raises(Prune):
        train(tiny_config("trainer.epochs=5"), [Pruner()])
    assert epochs == [1, 2]


# --- learning-rate schedules -----------------------------------------------------------------


def test_exponential_decays_lr_by_gamma_each_epoch(tiny_config: MakeConfig) -> None:
    config = tiny_config("scheduler=exponential", "scheduler.gamma=0.5", "optimizer.lr=0.01", "trainer.epochs=3")
    lrs = [entry["lr"] for entry in train(config).history]
    assert lrs == pytest.approx([0.01, 0.005, 0.0025])


def test_constant_keeps_the_optimizer_lr(tiny_config: MakeConfig) -> None:
    config = tiny_config("scheduler=constant", "optimizer=rmsprop", "optimizer.lr=0.002", "trainer.epochs=2")
    assert [entry["lr"] for entry in train(config).history] == pytest.approx([0.002, 0.002])


def drive(
    spec: SchedulerSpec, *, lr: float, epochs: int, steps_per_epoch: int, val_losses: list[float] | None = None
) -> list[float]:
    """The lr each batch trains with, for a schedule driven like the trainer drives it."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = LRSchedule(spec, optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)
    used = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            used.append(schedule.lr)
            optimizer.step()
            schedule.after_batch()
        schedule.after_epoch(None if val_losses is None else val_losses[epoch])
    return used


def test_warmup_rises_linearly_to_the_optimizer_lr() -> None:
    used = drive(Constant(warmup_epochs=2), lr=0.1, epochs=4, steps_per_epoch=3)
    warmup_steps = 6
    expected = [0.1 * (step + 1) / (warmup_steps + 1) for step in range(warmup_steps)]
    assert used[:warmup_steps] == pytest.approx(expected)
    assert used[warmup_steps:] == pytest.approx([0.1] * 6)


def test_warmup_then_exponential_decay() -> None:
    used = drive(Exponential(warmup_epochs=1, gamma=0.5), lr=0.1, epochs=4, steps_per_epoch=2)
    assert used[0] < used[1] < 0.1
    # Full lr once warm, then one decay per epoch after the warm-up epoch.
    assert used[2:] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_warmup_in_training_reaches_the_optimizer_lr(tiny_config: MakeConfig) -> None:
    config = tiny_config("scheduler.warmup_epochs=1", "optimizer.lr=0.004", "trainer.epochs=2")
    assert [entry["lr"] for entry in train(config).history] == pytest.approx([0.004, 0.004])


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0])
def test_onecycle_peaks_at_the_optimizer_lr(warmup_epochs: float) -> None:
    spec = OneCycle(warmup_epochs=warmup_epochs, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
    used = drive(spec, lr=0.1, epochs=4, steps_per_epoch=10)
    warmup_steps = round(warmup_epochs * 10)
    assert max(used) == pytest.approx(0.1)
    peak = used.index(max(used))
    assert peak == pytest.approx(warmup_steps + 0.3 * (40 - warmup_steps), abs=1.5)
    assert used[warmup_steps] == pytest.approx(0.1 / 25)
    assert used[-1] == pytest.approx(0.1 / 25 / 1e4, rel=0.05)
    assert all(a <= b for a, b in itertools.pairwise(used[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(used[peak:]))


def test_plateau_reduces_lr_only_when_val_loss_stalls() -> None:
    improving = drive(
        Plateau(patience=1, factor=0.5), lr=0.1, epochs=6, steps_per_epoch=1, val_losses=[6, 5, 4, 3, 2, 1]
    )
    assert improving == pytest.approx([0.1] * 6)
    stalled = drive(Plateau(patience=1, factor=0.5), lr=0.1, epochs=8, steps_per_epoch=1, val_losses=[5.0] * 8)
    assert stalled[:2] == pytest.approx([0.1, 0.1])  # the first stall is within patience
    assert min(stalled) < 0.1
    assert set(stalled) <= {0.1, 0.05, 0.025, 0.0125}
    assert stalled == sorted(stalled, reverse=True)


def test_plateau_waits_on_epochs_without_validation() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = LRSchedule(Plateau(patience=0, factor=0.5), optimizer, epochs=10, steps_per_epoch=1)
    for val_loss in [1.0, None, None, None, None, None]:
        schedule.after_batch()
        schedule.after_epoch(val_loss)
    assert schedule.lr == pytest.approx(0.1)
    schedule.after_batch()
    schedule.after_epoch(1.0)
    assert schedule.lr == pytest.approx(0.05)


# --- KL annealing ----------------------------------------------------------------------------


def test_beta_follows_the_linear_warmup(tiny_config: MakeConfig) -> None:
    config = tiny_config(
        "regularization=kl_warmup", "regularization.beta=2.0", "regularization.warmup_epochs=4", "trainer.epochs=5"
    )
    betas = [entry["beta"] for entry in train(config).history]
    assert betas == pytest.approx([2.0 * min(1.0, epoch / 4) for epoch in range(1, 6)])


def test_beta_follows_the_cyclical_schedule(tiny_config: MakeConfig) -> None:
    # Two cycles of two epochs, each a full ramp: half weight after the first epoch of a cycle,
    # full weight at its end.
    config = tiny_config(
        "regularization=cyclical", "regularization.cycles=2", "regularization.ramp_fraction=1.0", "trainer.epochs=4"
    )
    assert [entry["beta"] for entry in train(config).history] == pytest.approx([0.5, 1.0, 0.5, 1.0])


def test_beta_is_constant_without_annealing(tiny_config: MakeConfig) -> None:
    config = tiny_config("regularization=beta_vae", "trainer.epochs=2")
    assert [entry["beta"] for entry in train(config).history] == [4.0, 4.0]


# --- early stopping and the best epoch ---------------------------------------------------------

# A min_delta no loss can beat: only the first check counts as an improvement, so the best
# epoch is the first one measured, and patience p stops training p checks later.
NO_IMPROVEMENT = "trainer.min_delta=1e9"


def test_the_best_epoch_needs_an_improvement_beyond_min_delta_and_patience_counts_checks() -> None:
    best = BestEpoch("val_loss", patience=2, min_delta=0.1, keep_weights=False)
    values = [5.0, 4.0, None, 4.5, 3.95, 4.2]  # None: an epoch without validation
    stops = [best.update(epoch, {} if v is None else {"val_loss": v}) for epoch, v in enumerate(values, start=1)]
    assert stops == [False, False, False, False, True, True]  # 4.5, then 3.95 (not 0.1 below 4.0)
    assert (best.epoch, best.value) == (2, 4.0)


def test_early_stopping_ends_training_after_patience_checks_without_improvement(tiny_config: MakeConfig) -> None:
    stopped = train(tiny_config("trainer.epochs=5", "trainer.patience=2", NO_IMPROVEMENT))
    assert len(stopped.history) == 3
    assert stopped.metrics["epochs_trained"] == stopped.metrics["test_epoch"] == 3
    assert stopped.metrics["val_loss"] == stopped.history[-1]["val_loss"]
    # with validation every second epoch, patience counts validations: epochs 2 and 4
    sparse = train(tiny_config("trainer.epochs=6", "trainer.eval_every=2", "trainer.patience=1", NO_IMPROVEMENT))
    assert len(sparse.history) == 4
    assert train(tiny_config("trainer.epochs=3")).metrics["epochs_trained"] == 3  # off by default


def test_restore_best_tests_and_returns_the_best_epochs_weights(tiny_config: MakeConfig) -> None:
    result = train(tiny_config("trainer.epochs=3", "trainer.restore_best=true", NO_IMPROVEMENT))
    one_epoch = train(tiny_config("trainer.epochs=1"))
    assert (result.metrics["epochs_trained"], result.metrics["test_epoch"]) == (3, 1)
    assert result.metrics["val_loss"] == result.history[0]["val_loss"] != result.history[-1]["val_loss"]
    for name, tensor in one_epoch.model.state_dict().items():
        assert torch.equal(result.model.state_dict()[name], tensor), name


def test_a_resumed_run_keeps_the_best_epochs_weights_from_its_checkpoint(tiny_config: MakeConfig, tmp_path) -> None:
    config = tiny_config("trainer.epochs=3", "trainer.restore_best=true", "trainer.checkpoint_every=1", NO_IMPROVEMENT)
    whole = train(config, checkpoint=tmp_path / "checkpoint.pt")  # the last checkpoint: after epoch 2
    state, why = load_checkpoint(tmp_path / "checkpoint.pt", fingerprint(config))
    assert state is not None and state.epoch == 2, why
    resumed = train(config, resume=state)
    assert resumed.metrics["test_epoch"] == 1
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


def test_a_single_runs_summary_names_the_epoch_its_weights_come_from_when_not_the_last(tiny_config: MakeConfig) -> None:
    best = train(tiny_config("trainer.epochs=3", "trainer.restore_best=true", NO_IMPROVEMENT)).metrics
    last = train(tiny_config("trainer.epochs=3")).metrics
    assert "Weights:   epoch 1's, the best of 3 trained (trainer.restore_best)" in run_summary(best, {}, "r", "ui")
    assert "Weights:" not in run_summary(last, {}, "r", "ui")


def test_each_validation_measures_the_active_units_and_the_kl_of_each_latent_dimension(tiny_config: MakeConfig) -> None:
    config = tiny_config("trainer.epochs=3", "trainer.eval_every=2")
    result = train(config)
    assert [set(LATENT_METRICS) <= epoch.keys() for epoch in result.history] == [False, True, True]
    val = config.data.load().val
    result.model.eval()
    with torch.no_grad():  # the last epoch's weights, on the validation split, computed directly
        mu, log_var = result.model.encode(val)
    kl = gaussian_kl(mu, log_var).mean(0)
    last = result.history[-1]
    assert last["val_active_units"] == float((mu.var(0) > 0.01).sum())
    assert [last["val_kl_dim_min"], last["val_kl_dim_median"], last["val_kl_dim_max"]] == pytest.approx(
        [min(kl.tolist()), statistics.median(kl.tolist()), max(kl.tolist())], rel=1e-5
    )
    assert last["val_kl"] == pytest.approx(kl.sum().item(), rel=1e-5)


def test_an_early_stop_closes_a_single_runs_progress_bar_at_the_epoch_it_stopped(tiny_config: MakeConfig) -> None:
    progress = EpochProgress(5, "bar")
    train(tiny_config("trainer.epochs=5", "trainer.patience=2", NO_IMPROVEMENT), [progress])
    assert progress.bar.n == 3 and progress.bar.disable  # tqdm's close() disables the bar
