"""The registry: every architecture builds, has its exact parameter count, maps images to images."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from denoise_train.models import REGISTRY, count_params, create_model, get_arch, list_archs  # noqa: E402

SEED_COUNTS = {
    "dense_ae_1": 2_353,
    "dense_ae_2": 3_922,
    "dense_ae_8": 13_336,
    "dense_ae_32": 50_992,
    "dense_denoiser_16": 25_888,
    "conv_denoiser": 3_217,
}


def test_seed_models_registered_with_the_chapter_counts():
    for name, count in SEED_COUNTS.items():
        assert REGISTRY[name].params == count


@pytest.mark.parametrize("name", list_archs())
def test_parameter_count_and_shapes(name):
    arch = get_arch(name)
    model = create_model(name).eval()
    assert count_params(model) == arch.params
    with torch.no_grad():
        x = torch.rand(3, 1, 28, 28)
        y = model(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("name", [n for n in list_archs() if get_arch(n).fully_convolutional])
def test_fully_convolutional_models_take_any_size(name):
    with torch.no_grad():
        assert create_model(name)(torch.rand(2, 1, 64, 48)).shape == (2, 1, 64, 48)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="conv_denoiser"):
        get_arch("resnet9000")


def test_list_command_prints_every_architecture():
    from typer.testing import CliRunner

    from denoise_train.cli import app

    result = CliRunner().invoke(app, ["list"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for name, count in SEED_COUNTS.items():
        line = next(line for line in result.output.splitlines() if line.startswith(name + " "))
        assert f"{count:,}" in line
