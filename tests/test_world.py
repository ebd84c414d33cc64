"""The wide training world: seeded, in range, as wide as promised; frozen batch norm stays put."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from denoise_train import world  # noqa: E402
from denoise_train.config import TrainConfig  # noqa: E402
from denoise_train.loop import fit  # noqa: E402
from denoise_train.mnist import load_split  # noqa: E402
from tests.helpers import tiny_world_config  # noqa: E402


@pytest.fixture(scope="module")
def digits(tiny_mnist):
    return load_split("train", tiny_mnist, download=False)[0][:, 0]


def test_world_is_seeded_and_in_range(digits):
    a_noisy, a_clean = world.world_batch(24, 64, digits, np.random.default_rng(3))
    b_noisy, b_clean = world.world_batch(24, 64, digits, np.random.default_rng(3))
    assert np.array_equal(a_noisy, b_noisy) and np.array_equal(a_clean, b_clean)
    assert a_clean.shape == a_noisy.shape == (24, 1, 64, 64)
    assert a_clean.dtype == a_noisy.dtype == np.float32
    assert a_clean.min() >= 0.0 and a_clean.max() <= 1.0
    assert a_noisy.min() >= 0.0 and a_noisy.max() <= 1.0


def test_world_spans_backgrounds_polarities_and_clean_inputs(digits):
    rng = np.random.default_rng(0)
    noisy, clean = world.world_batch(400, 48, digits, rng)
    background = np.median(clean.reshape(len(clean), -1), axis=1)
    # Backgrounds across the whole range, not only MNIST's black.
    assert (background < 0.05).mean() > 0.1
    assert ((background > 0.3) & (background < 0.7)).mean() > 0.15
    assert (background > 0.8).mean() > 0.1
    # Both polarities: ink lighter than the background in some images, darker in others.
    means = clean.reshape(len(clean), -1).mean(axis=1)
    assert (means > background + 0.01).mean() > 0.1 and (means < background - 0.01).mean() > 0.1
    # A share comes back untouched (the model must learn to leave clean images alone).
    untouched = np.all(noisy == clean, axis=(1, 2, 3)).mean()
    assert 0.02 < untouched < 0.2


def test_held_out_fonts_never_train():
    assert not set(world.TRAIN_FONTS) & set(world.HELD_OUT_FONTS)


def test_each_noise_kind_adds_what_it_says():
    rng = np.random.default_rng(1)
    flat = np.full((64, 64), 0.5, np.float32)
    pg = world.poisson_gaussian(flat, 20.0, 0.0, rng)
    assert abs(pg.std() - np.sqrt(0.5 / 20.0)) < 0.02  # shot noise: var = x / peak
    dark = world.poisson_gaussian(np.full((64, 64), 0.05, np.float32), 20.0, 0.0, rng)
    assert dark.std() < pg.std()  # signal-dependent
    jpeg = world.jpeg_roundtrip(flat + 0.1 * rng.standard_normal(flat.shape), 30)
    assert jpeg.shape == flat.shape and 0.0 < np.abs(jpeg - flat).mean() < 0.1


def test_world_training_with_frozen_batch_norm_keeps_its_statistics(tmp_path, tiny_mnist):
    images = load_split("train", tiny_mnist, download=False)[0]
    config = tiny_world_config("unet_lite_near", freeze_bn=True)
    first = fit(config.with_(lr=1e-9), images, log=lambda m: None, progress=False).model
    before = {k: v.clone() for k, v in first.state_dict().items() if "running" in k}
    result = fit(config, images, log=lambda m: None, progress=False)
    after = {k: v for k, v in result.model.state_dict().items() if "running" in k}
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    assert "val_scene_psnr" in result.metrics


def test_world_mix_defaults_are_stage_one_to_four_and_its_knobs_move_the_draws(digits):
    assert world.WorldMix().ink_kinds() == pytest.approx((0.35, 0.65, 0.85))
    handwriting, printing, display = world.WorldMix(display_share=0.35).ink_kinds()
    assert display - printing == pytest.approx(0.35)
    assert (printing - handwriting) == pytest.approx(handwriting - 0.05)  # 2:2:1 kept
    with pytest.raises(ValueError):
        world.WorldMix(read_noise_max=-0.1)
    base = world.world_batch(16, 32, digits, np.random.default_rng(5))
    wider = world.world_batch(16, 32, digits, np.random.default_rng(5), world.WorldMix(0.6, 0.2))
    assert not np.array_equal(base[1], wider[1])


def test_framed_readings_are_small_rows_inside_the_image_and_off_by_default(digits):
    """A framed reading's ink lies in one band of 12-40 px with a margin above and below; the
    default mix never draws one (stages 1-6 keep their random stream)."""
    for seed in range(20):
        lit, ghost = world.display_ink(64, 96, np.random.default_rng(seed), framed=True)
        rows = np.flatnonzero(np.maximum(lit, ghost).max(axis=1) > 0.05)
        assert rows.size and 8 <= rows[-1] - rows[0] + 1 <= 42
    plain = world.WorldMix(display_share=0.9)
    assert np.array_equal(
        world.world_batch(8, 32, digits, np.random.default_rng(3), plain)[1],
        world.world_batch(8, 32, digits, np.random.default_rng(3), world.WorldMix(0.9, 0.06, 0.0))[
            1
        ],
    )
    framed = world.WorldMix(display_share=0.9, framed_share=1.0)
    assert not np.array_equal(
        world.world_batch(8, 32, digits, np.random.default_rng(3), plain)[1],
        world.world_batch(8, 32, digits, np.random.default_rng(3), framed)[1],
    )
    with pytest.raises(ValueError, match="framed_share"):
        world.WorldMix(framed_share=1.5)


def test_moderate_noise_stays_in_users_range_and_is_off_by_default():
    """With moderate_share 1 no Gaussian draw on mid-grey exceeds sigma 0.3 (the full range
    reaches 0.75); the default mix keeps stages 1-15's random stream."""
    grey = np.full((32, 32), 0.5, np.float32)

    def spreads(mix: world.WorldMix) -> np.ndarray:
        rng = np.random.default_rng(0)
        return np.array([np.std(world.world_noise(grey, rng, mix) - grey) for _ in range(400)])

    full, moderate = spreads(world.DEFAULT_MIX), spreads(world.WorldMix(moderate_share=1.0))
    assert full.max() > 0.4 and moderate.max() < 0.33
    assert np.median(moderate[moderate > 0.005]) > 0.03  # noisy, not clean
    assert np.array_equal(spreads(world.WorldMix(moderate_share=0.0)), full)
    with pytest.raises(ValueError, match="moderate_share"):
        world.WorldMix(moderate_share=1.5)


def test_faint_guides_are_thin_periodic_lines_and_off_by_default(digits):
    """Faint guides are 1-2 px rules (a grid or dotted at times) across the image, drawn only
    when asked: the default mix keeps stages 1-15's random stream."""
    for seed in range(12):
        lines = world.faint_lines(64, 64, np.random.default_rng(seed))
        profile = lines.mean(axis=1)  # rule rows, and the grid's columns or nothing between
        rules = np.flatnonzero(profile == profile.max())
        assert set(np.unique(lines)) <= {0.0, 1.0} and 1 <= rules.size <= 24
        assert len(np.unique(profile)) == 2
    rng = np.random.default_rng(4)
    assert np.array_equal(
        world.world_batch(8, 32, digits, np.random.default_rng(4))[1],
        world.world_batch(8, 32, digits, np.random.default_rng(4), world.WorldMix(faint_share=0))[
            1
        ],
    )
    faint = world.world_batch(8, 32, digits, rng, world.WorldMix(faint_share=1.0))[1]
    assert not np.array_equal(faint, world.world_batch(8, 32, digits, np.random.default_rng(4))[1])
    with pytest.raises(ValueError, match="faint_share"):
        world.WorldMix(faint_share=-1)


def test_world_mix_settings_are_checked_before_training():
    from denoise_train.config import UsageError

    with pytest.raises(UsageError, match="world_read_noise_max"):
        TrainConfig(data="world", world_read_noise_max=0.9)
    with pytest.raises(UsageError, match="world_framed_share"):
        TrainConfig(data="world", world_framed_share=-0.1)
    with pytest.raises(UsageError, match="world_moderate_share"):
        TrainConfig(data="world", world_moderate_share=2.0)
