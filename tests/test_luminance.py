"""Clipped colour channels restored before the luminance: paper keeps its level, everything else
(unclipped images, grey in RGB, tiny scans) gets exactly the plain luminance, row by row."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from denoise_cli.cli import app
from denoise_cli.core.metrics import psnr
from denoise_cli.files.luminance import luma, unclipped_luma
from tests.helpers import tree_hash
from tests.tiny_models import MODELS_DIR as MODELS

CREAM = np.array([236.0, 231.0, 206.0])
BLUE = np.array([40.0, 60.0, 170.0])


def _paper(
    shape: tuple[int, int], sigma: float, seed: int, ink: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) 8-bit RGB: cream paper with a blue stroke, per-channel Gaussian noise."""
    clean = np.broadcast_to(CREAM, (*shape, 3)).copy()
    if ink:
        clean[shape[0] // 3 : shape[0] // 3 + 4, shape[1] // 5 : -shape[1] // 5] = BLUE
    rng = np.random.default_rng(seed)
    noisy = np.clip(np.round(clean + rng.normal(0, sigma, clean.shape)), 0, 255)
    return clean.astype(np.uint8), noisy.astype(np.uint8)


def _paper_level(gray: np.ndarray) -> float:
    return float(np.concatenate([gray[:10], gray[-10:]]).mean())


@pytest.mark.parametrize("sigma", [20.0, 30.0])
def test_clipped_paper_gets_most_of_its_level_back_and_no_more(sigma):
    """Restored, the luminance holds most of the paper's level again, never more. (Heavier
    noise takes the restored luminance itself past 255, where it is clipped in grey: that clip
    the model sees and undoes, checked through the CLI below.)"""
    clean, noisy = _paper((64, 256), sigma, seed=int(sigma))
    truth = _paper_level(luma(clean).astype(np.float64))
    plain = _paper_level(luma(noisy).astype(np.float64)) - truth
    restored = _paper_level(unclipped_luma(noisy).astype(np.float64)) - truth
    assert plain < -1.5  # the deficit the luminance alone hides
    assert plain / 2 < restored < 0.5


def test_white_paper_clipped_in_half_its_values_is_restored_everywhere():
    """Paper at 255 clips about half of each channel's values; windows that drew a few more
    than half must not be skipped, or the paper comes back in patches."""
    from denoise_cli.files.luminance import _restoring_change

    rng = np.random.default_rng(6)
    noisy = np.clip(np.round(255.0 + rng.normal(0, 15, (48, 256))), 0, 255).astype(np.uint8)
    change = _restoring_change(noisy)
    clipped = noisy == 255
    assert change is not None and 0.4 < clipped.mean() < 0.6
    assert np.count_nonzero(change[clipped]) > 0.9 * clipped.sum()
    assert (change[~clipped] == 0).all() and (change >= 0).all()


def test_images_without_clipped_channels_get_the_plain_luminance():
    rng = np.random.default_rng(2)
    photo = rng.integers(1, 255, (40, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(unclipped_luma(photo), luma(photo))
    clean, _ = _paper((30, 80), 0.0, seed=0)
    np.testing.assert_array_equal(unclipped_luma(clean), luma(clean))


def test_grey_in_rgb_and_tiny_scans_get_the_plain_luminance():
    """A grey pixel at 255 or 0 is clipped in all three channels: restored, it stays at the
    clip. Rows of 8 pixels have too few pairs for a noise estimate: nothing is restored."""
    rng = np.random.default_rng(3)
    grey = np.clip(np.round(rng.normal(230, 40, (32, 64))), 0, 255).astype(np.uint8)
    rgb = np.dstack([grey] * 3)
    np.testing.assert_array_equal(unclipped_luma(rgb), luma(rgb))
    _, tiny = _paper((8, 8), 35.0, seed=4, ink=False)
    assert (tiny == 255).any()
    np.testing.assert_array_equal(unclipped_luma(tiny), luma(tiny))


def test_rows_are_restored_on_their_own_so_bands_agree_with_the_whole_image():
    _, noisy = _paper((50, 120), 30.0, seed=5)
    whole = unclipped_luma(noisy)
    for y0, y1 in ((0, 1), (3, 17), (17, 50)):
        np.testing.assert_array_equal(unclipped_luma(noisy[y0:y1]), whole[y0:y1])
    stack = np.stack([noisy, noisy[::-1]])  # a batch of images: each as on its own
    np.testing.assert_array_equal(unclipped_luma(stack), np.stack([whole, whole[::-1]]))
    assert unclipped_luma(noisy[:0]).shape == (0, 120)


def test_a_noisy_colour_scan_comes_back_with_its_paper_level(tmp_path):
    """Through the CLI and the bundled default: the paper's luminance within a grey level of
    the clean scan's (the plain luminance left it 3 levels dark), the ink still blue."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    clean, noisy = _paper((48, 160), 30.0, seed=6)
    Image.fromarray(noisy).save(src / "scan.png")
    before = tree_hash(src)
    result = CliRunner().invoke(app, [str(src), str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert tree_hash(src) == before
    got = np.asarray(Image.open(out / "scan.png").convert("RGB"))
    truth = _paper_level(luma(clean).astype(np.float64))
    assert abs(_paper_level(luma(got).astype(np.float64)) - truth) < 1.0
    stroke = got[48 // 3 + 1 : 48 // 3 + 3, 40:-40].reshape(-1, 3).mean(0)
    assert stroke[2] > stroke[0] + 60  # blue ink stays blue


def test_saturated_clean_drawings_get_the_plain_luminance():
    """Red, blue or cyan text on white, anti-aliased: the paper clips at 255 and the ink at 0
    in the same channel, and the edges between would read as heavy noise. Nothing is
    restored where a window holds both clips."""
    unit = np.array([255] * 6 + [200, 120, 0, 0, 60, 180] + [255] * 4, np.uint8)
    strokes = np.tile(unit, 13)[:200]
    for ink in ((255, 0, 0), (0, 0, 255), (0, 255, 255)):
        image = np.empty((24, 200, 3), np.uint8)
        for c, level in enumerate(ink):
            image[..., c] = 255 if level == 255 else strokes
        np.testing.assert_array_equal(unclipped_luma(image), luma(image))


def _run(src, out, *args) -> None:
    result = CliRunner().invoke(app, [str(src), str(out), "--workers", "1", *map(str, args)])
    assert result.exit_code == 0, result.output


def test_what_the_model_leaves_alone_comes_back_exactly(tmp_path):
    """An identity model, and a strip too thin for the runtime to denoise, return a noisy,
    clipped colour scan byte for byte: what the model did not change is measured against the
    luminance it was given, restored or not."""
    src = tmp_path / "in"
    src.mkdir()
    _, noisy = _paper((48, 160), 30.0, seed=7)
    _, strip = _paper((12, 300), 30.0, seed=8, ink=False)
    assert (unclipped_luma(noisy) != luma(noisy)).any()
    assert (unclipped_luma(strip) != luma(strip)).any()
    Image.fromarray(noisy).save(src / "scan.png")
    Image.fromarray(strip).save(src / "strip.png")
    _run(src, tmp_path / "identity", "--model", MODELS / "identity_either.onnx")
    got = np.asarray(Image.open(tmp_path / "identity" / "scan.png"))
    np.testing.assert_array_equal(got, noisy)
    _run(src, tmp_path / "default")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "default" / "strip.png")), strip)


def test_score_measures_colour_files_on_their_plain_luminance(tmp_path):
    """`score` compares what the files hold: a noisy scan against its clean one scores the
    plain luminance's PSNR, not the restored one's."""
    clean, noisy = _paper((48, 160), 30.0, seed=9)
    (tmp_path / "ref").mkdir()
    (tmp_path / "res").mkdir()
    Image.fromarray(clean).save(tmp_path / "ref" / "a.png")
    Image.fromarray(noisy).save(tmp_path / "res" / "a.png")
    report = tmp_path / "score.json"
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "res"), str(tmp_path / "ref"), "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    scored = json.loads(report.read_text())["overall"]["psnr"]
    want = psnr(luma(clean).astype(np.float32) / 255, luma(noisy).astype(np.float32) / 255)
    assert scored == pytest.approx(want, abs=0.01)
