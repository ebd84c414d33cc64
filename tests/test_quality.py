"""End to end on real MNIST test digits: 8-bit PNG files lose at most 0.3 dB to float inference,
and dark-on-light copies score the same with --invert auto on a light-on-dark model. Needs only
the runtime."""

from __future__ import annotations

import numpy as np
import pytest

from denoise_cli.cli import app
from denoise_cli.core.metrics import psnr
from denoise_cli.core.noise import add_noise
from denoise_cli.model.session import Denoiser
from tests.helpers import load_gray, mnist_dir, save_gray


def _test_digits(n: int) -> np.ndarray:
    from denoise_train.idx import read_idx  # numpy only: no torch in the runtime environment

    path = mnist_dir() / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.skip(f"real MNIST not found at {path} (set DENOISE_MNIST_DIR)")
    return read_idx(path)[:n].astype(np.float32) / 255.0


def _check(tmp_path, n: int) -> None:
    clean = _test_digits(n)
    noisy = add_noise(clean, "gaussian", 0.5, 2024)
    for i in range(n):
        save_gray(tmp_path / "in" / "normal" / f"{i:05d}.png", noisy[i])
        save_gray(tmp_path / "in" / "inverted" / f"{i:05d}.png", 1.0 - noisy[i])
    # The default (either polarity): PNG files lose at most 0.3 dB to float inference.
    normal, _ = _run(tmp_path, n, "default")
    float_psnr = float(np.mean(psnr(clean, Denoiser().run(noisy[:, None])[:, 0])))
    normal_psnr = float(np.mean(psnr(clean, normal)))
    assert abs(normal_psnr - float_psnr) <= 0.3, (normal_psnr, float_psnr)
    assert normal_psnr > 19.0  # the bundled model, not an identity
    # A light-on-dark model: dark-on-light copies score the same through --invert auto.
    normal, inverted = _run(tmp_path, n, "unet_scenes")
    normal_psnr = float(np.mean(psnr(clean, normal)))
    inverted_psnr = float(np.mean(psnr(1.0 - clean, inverted)))
    assert abs(inverted_psnr - normal_psnr) <= 0.05, (inverted_psnr, normal_psnr)


def _run(tmp_path, n: int, model: str) -> tuple[np.ndarray, np.ndarray]:
    from typer.testing import CliRunner

    out = tmp_path / f"out-{model}"
    result = CliRunner().invoke(app, [str(tmp_path / "in"), str(out), "--model", model])
    assert result.exit_code == 0, result.output
    read = lambda kind: np.stack(  # noqa: E731
        [load_gray(out / kind / f"{i:05d}.png") for i in range(n)]
    )
    return read("normal"), read("inverted")


def test_png_round_trip_costs_under_0_3_db(tmp_path):
    _check(tmp_path, 1000)


@pytest.mark.slow
def test_png_round_trip_on_all_10000_test_digits(tmp_path):
    _check(tmp_path, 10_000)
