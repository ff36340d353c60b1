"""The convolutional models (model=conv, model=resnet) on image-shaped data: they train on 28x28
gray and 32x32 RGB images through the real configs, keep any image size, put each technique
option where it belongs, and refuse images they cannot take in one line."""

from __future__ import annotations

import gzip
import math
import struct

import pytest
import torch
from torch import nn

from vae_sweep.errors import ConfigError
from vae_sweep.train import ConvVAESpec, ResNetVAESpec, parse_run_config, train
from vae_sweep.train.conv import Residual
from vae_sweep.train.models import Activation, Likelihood, Normalization, check_model

CONV_TINY = ("debug=tiny_conv", "trainer.epochs=1", "tracking=none")
RGB_32 = ("data.side=32", "data.channels=3")


@pytest.fixture
def conv_config(compose_config):
    def make(*overrides: str):
        return parse_run_config(compose_config(*CONV_TINY, *overrides))

    return make


@pytest.mark.parametrize(
    ("overrides", "shape", "likelihood"),
    [((), (1, 28, 28), Likelihood.bernoulli), (RGB_32, (3, 32, 32), Likelihood.discretized_logistic)],
    ids=["28x28-gray", "32x32-rgb"],
)
def test_conv_trains_on_images_with_the_likelihood_that_fits_them(conv_config, overrides, shape, likelihood) -> None:
    result = train(conv_config("trainer.epochs=3", *overrides))
    assert result.model.likelihood is likelihood  # likelihood=auto: gray -> Bernoulli, RGB -> logistic
    assert result.image_shape == shape
    assert result.reconstructions.shape == (8, *shape) and result.prior_samples.shape == (8, *shape)
    losses = [epoch["val_loss"] for epoch in result.history]
    assert losses[-1] < losses[0]  # it learns
    metrics = result.metrics
    assert metrics["test_bpd"] == pytest.approx(metrics["test_iwae"] / (math.prod(shape) * math.log(2)))
    assert metrics["test_bpd"] > 0


def test_resnet_trains_on_32x32_rgb(conv_config) -> None:
    result = train(
        conv_config(*RGB_32, "model=resnet", "model.channels=8", "model.residual_channels=4", "model.latent_dim=4")
    )
    assert result.image_shape == (3, 32, 32)
    residuals = [module for module in result.model.modules() if isinstance(module, Residual)]
    assert len(residuals) == 4  # two in the encoder, two in the decoder, as in van den Oord et al.
    assert math.isfinite(result.metrics["test_loss"])


@pytest.mark.parametrize("spec", [ConvVAESpec(channels=[4, 8, 8]), ResNetVAESpec(channels=8, residual_channels=4)])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (3, 30, 22), (1, 27, 9)])
def test_any_image_size_comes_back_the_same_size(spec, shape) -> None:
    model = spec.build(shape)
    check_model(model, shape)  # encode gives (n, latent), decode gives (n, *shape)
    decoded, mu, _ = model(torch.rand(3, *shape))
    assert decoded.shape == (3, *shape) and mu.shape == (3, spec.latent_dim)


def test_conv_technique_options_go_where_asked() -> None:
    spec = ConvVAESpec(
        channels=[4, 8],
        activation=Activation.prelu,
        encoder_norm=Normalization.batchnorm,
        decoder_norm=Normalization.layernorm,
        encoder_dropout=0.2,
    )
    model = spec.build((1, 28, 28))
    encoder, decoder = list(model.encoder), list(model.decoder)
    assert [type(m) for m in encoder] == [nn.Conv2d, nn.BatchNorm2d, nn.PReLU, nn.Dropout2d] * 2
    assert [m.num_parameters for m in encoder if isinstance(m, nn.PReLU)] == [4, 8]  # one slope per channel
    assert [type(m) for m in decoder] == [nn.ConvTranspose2d, nn.GroupNorm, nn.PReLU, nn.ConvTranspose2d]
    assert all(m.num_groups == 1 for m in decoder if isinstance(m, nn.GroupNorm))  # layer norm over (C, H, W)
    assert [m.out_channels for m in encoder if isinstance(m, nn.Conv2d)] == [4, 8]


def test_conv_runs_get_technique_tags_and_a_name_that_says_conv(conv_config) -> None:
    from vae_sweep.track.run import model_label, technique_tags

    config = conv_config("model.activation=elu", "model.encoder_norm=batchnorm", "model.decoder_dropout=0.1")
    tags = technique_tags(config)
    assert tags["technique.activation"] == "elu"
    assert tags["technique.normalization"] == "batchnorm/none"
    assert tags["technique.dropout"] == "none/0.1"
    assert model_label(config.model) == "conv-elu"


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        (ConvVAESpec(channels=[4, 4, 4, 4]), (1, 8, 8), "4 stride-2 layers shrink 8x8 images to nothing; use fewer"),
        (ConvVAESpec(), (64,), "conv needs (channels, height, width) images, got samples of shape (64,)"),
        (ResNetVAESpec(downsamplings=5), (3, 16, 16), "5 stride-2 layers shrink 16x16 images to nothing; use fewer"),
    ],
    ids=["too-deep", "vectors", "resnet-too-deep"],
)
def test_images_a_model_cannot_take_are_refused_in_one_line(spec, shape, message) -> None:
    with pytest.raises(ConfigError) as refused:
        spec.build(shape)
    assert refused.value.key == "model" and refused.value.message == message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.channels=[]", "model.channels"),
        ("model.channels=[8,0]", "model.channels"),
        ("model.encoder_dropout=1.0", "model.encoder_dropout"),
        ("model.likelihood=poisson", "model.likelihood"),
    ],
)
def test_bad_conv_settings_name_their_key(conv_config, override, key) -> None:
    with pytest.raises(ConfigError) as refused:
        conv_config(override)
    assert refused.value.key == key


def test_a_learned_scale_is_trained_and_rgb_pictures_are_colour(conv_config) -> None:
    from vae_sweep.track.images import image_grid

    result = train(conv_config(*RGB_32, "trainer.epochs=2"))
    log_scale = result.model.output_log_scale()
    assert isinstance(log_scale, nn.Parameter) and log_scale.shape == (3, 32, 32)
    assert not torch.allclose(log_scale, torch.full_like(log_scale, math.log(0.1)))  # moved from log(gaussian_std)
    grid = image_grid([result.test_inputs, result.reconstructions], result.image_shape)
    assert grid.shape[2] == 3 and grid.dtype.name == "uint8"
    channels_differ = (grid[..., 0] != grid[..., 1]).any() or (grid[..., 1] != grid[..., 2]).any()
    assert channels_differ  # three channels drawn, not one gray image copied three times


def test_compile_option_compiles_the_model_that_trains(conv_config, monkeypatch) -> None:
    compiled = []
    original = nn.Module.compile

    def eager_compile(module, *args, **kwargs):  # Dynamo traces, without inductor's C++ build
        compiled.append(type(module).__name__)
        return original(module, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(nn.Module, "compile", eager_compile)
    plain = train(conv_config())
    assert compiled == []
    result = train(conv_config("trainer.compile=true"))
    assert compiled == ["ImageVAE"]
    assert set(result.model.state_dict()) == set(plain.model.state_dict())  # same keys: checkpoints load
    assert result.metrics["test_loss"] == pytest.approx(plain.metrics["test_loss"], rel=1e-4)


def test_the_conv_study_trains_on_mnist_files_where_present(compose_config, tmp_path) -> None:
    """study=conv reads MNIST's IDX files from data.root: here ones the test writes, 28x28."""
    pixels = torch.randint(0, 256, (40, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for name, images in (("train-images-idx3-ubyte.gz", pixels[:30]), ("t10k-images-idx3-ubyte.gz", pixels[30:])):
        header = struct.pack(">IIII", 0x00000803, len(images), 28, 28)
        (tmp_path / name).write_bytes(gzip.compress(header + images.numpy().tobytes()))
    overrides = [f"data.root={tmp_path}", "data.download=false", "data.verify_checksum=false", "data.val_size=10"]
    tiny = ["model.channels=[4,8]", "trainer.epochs=1", "trainer.batch_size=8", "tracking=none"]
    config = parse_run_config(compose_config("study=conv", *overrides, *tiny))
    assert (config.data.name, config.model.name) == ("mnist", "conv")
    result = train(config)
    assert result.image_shape == (1, 28, 28)
    assert result.test_inputs.unique().tolist() == [0.0, 1.0]  # the study's dynamic binarization
