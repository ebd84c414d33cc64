"""Noise synthesis statistics and the numpy PSNR/SSIM (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from denoise_cli.core.metrics import psnr, ssim
from denoise_cli.core.noise import NOISE_KINDS, add_noise

FLAT = np.full((64, 64, 64), 0.5, np.float32)


def test_gaussian_statistics_unclipped():
    out = add_noise(FLAT, "gaussian", 0.1, 0)
    noise = out - FLAT
    assert abs(noise.mean()) < 2e-3
    assert noise.std() == pytest.approx(0.1, rel=0.01)


def test_gaussian_reference_setting_is_clipped_and_biased_at_black():
    black = np.zeros((100_000,), np.float32)
    out = add_noise(black, "gaussian", 0.5, 0)
    assert out.min() == 0.0 and out.max() <= 1.0
    assert np.mean(out == 0.0) == pytest.approx(0.5, abs=0.01)  # half the draws are negative
    assert out.mean() == pytest.approx(0.5 / np.sqrt(2 * np.pi), abs=0.01)  # E[max(0, X)]


@pytest.mark.parametrize("kind", list(NOISE_KINDS))
def test_seeded_reproducible_in_range_and_input_untouched(kind):
    x = np.random.default_rng(1).random((8, 28, 28)).astype(np.float32)
    before = x.copy()
    level = 20.0 if kind == "poisson" else 0.3
    a, b = add_noise(x, kind, level, 42), add_noise(x, kind, level, 42)
    c = add_noise(x, kind, level, 43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(x, before)


def test_salt_and_pepper_fraction():
    out = add_noise(FLAT, "salt-pepper", 0.2, 0)
    assert np.mean(out == 0.0) == pytest.approx(0.1, abs=0.005)
    assert np.mean(out == 1.0) == pytest.approx(0.1, abs=0.005)


def test_speckle_leaves_black_black():
    x = np.zeros((1000,), np.float32)
    np.testing.assert_array_equal(add_noise(x, "speckle", 0.5, 0), x)


def test_poisson_keeps_the_mean():
    out = add_noise(np.full((200_000,), 0.3, np.float32), "poisson", 30.0, 0)
    assert out.mean() == pytest.approx(0.3, abs=0.005)
    assert out.std() == pytest.approx(np.sqrt(0.3 * 30) / 30, rel=0.05)


def test_bad_kind_and_level():
    with pytest.raises(ValueError, match="unknown noise kind 'pink'"):
        add_noise(FLAT, "pink", 0.1, 0)
    with pytest.raises(ValueError, match="must be >= 0"):
        add_noise(FLAT, "gaussian", -1.0, 0)
    with pytest.raises(ValueError, match="must be >= 0"):  # NaN would make every image black
        add_noise(FLAT, "gaussian", float("nan"), 0)
    with pytest.raises(ValueError, match="fraction of pixels, 0-1; got 5"):  # was accepted
        add_noise(FLAT, "salt-pepper", 5.0, 0)


def test_mixed_noise_draws_every_kind_and_matches_the_kind_functions():
    rng = np.random.default_rng(3)
    x = np.full((400, 1, 8, 8), 0.5, np.float32)
    out = add_noise(x, "mixed", 0.0, rng)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Salt-and-pepper images hold only 0, 0.5 and 1; Poisson's only multiples of 1/peak.
    per_image_values = [len(np.unique(img)) for img in out]
    assert min(per_image_values) <= 3 < max(per_image_values)
    assert not np.array_equal(add_noise(x, "mixed", 0.0, 1), add_noise(x, "mixed", 0.0, 2))
    np.testing.assert_array_equal(add_noise(x, "mixed", 0.0, 5), add_noise(x, "mixed", 0.0, 5))


def test_psnr_known_value():
    a = np.zeros((2, 28, 28))
    b = np.full((2, 28, 28), 0.1)
    np.testing.assert_allclose(psnr(a, b), [20.0, 20.0])
    assert np.isinf(psnr(a, a)).all()


def test_ssim_bounds_and_identity():
    rng = np.random.default_rng(0)
    a = rng.random((3, 28, 28))
    np.testing.assert_allclose(ssim(a, a), 1.0)
    worse = ssim(a, np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1))
    better = ssim(a, np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1))
    assert (worse < better).all() and (better < 1).all()


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((4, 28, 28))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    expected = [
        metrics.structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b, strict=True)
    ]
    np.testing.assert_allclose(ssim(a, b), expected, rtol=1e-10)


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(np.zeros((28, 28)), np.zeros((27, 28)))
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))


def test_blind_noise_varies_per_image_and_is_seeded():
    x = np.full((600, 1, 28, 28), 0.5, np.float32)
    a, b = add_noise(x, "blind", 0.0, 7), add_noise(x, "blind", 0.0, 7)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    stds = (a - x).std(axis=(1, 2, 3))
    assert stds.min() < 0.1 and stds.max() > 0.35  # weak and strong noise in one batch
    exact = np.mean((a == 0.0) | (a == 1.0), axis=(1, 2, 3))
    assert ((exact > 0.01) & (stds > 0)).any()  # some salt-and-pepper images
