"""The chroma filter: bands give the whole image's pixels, grey stays grey, flat colour stays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from denoise_cli.files.chroma import ChromaRows, recolor
from denoise_cli.files.images import to_gray
from denoise_cli.files.luminance import luma, unclipped_luma


@pytest.mark.parametrize(("height", "width"), [(1, 5), (3, 4), (8, 8), (50, 37), (257, 64)])
@pytest.mark.parametrize("band", [1, 2, 5, 7, 13, 128])
def test_bands_give_the_whole_images_pixels_and_carry_their_rows_along(height, width, band):
    rng = np.random.default_rng(height * 1000 + band)
    gray = rng.integers(0, 256, (height, width), dtype=np.uint8)
    color = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (height, width), dtype=np.uint8)
    rows, extra = ChromaRows(), []
    out = []
    for y in range(0, height, band):
        rgb, a = rows.push(
            gray[y : y + band], color[y : y + band], alpha[y : y + band], y + band >= height
        )
        out.append(rgb)
        extra.append(a)
    np.testing.assert_array_equal(np.concatenate(out), recolor(gray, color))
    np.testing.assert_array_equal(np.concatenate(extra), alpha)


def test_grey_stays_grey_and_flat_colour_stays_as_it_was():
    gray = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    np.testing.assert_array_equal(recolor(gray, np.dstack([gray] * 3)), np.dstack([gray] * 3))
    paper = np.broadcast_to(np.array([238, 232, 214], np.uint8), (20, 30, 3))
    np.testing.assert_array_equal(recolor(luma(paper), paper), paper)


def test_chroma_noise_on_flat_paper_is_averaged_away():
    rng = np.random.default_rng(1)
    paper = np.array([238.0, 232.0, 214.0])
    noisy = np.clip(np.round(paper + rng.normal(0, 12, (40, 60, 3))), 0, 255).astype(np.uint8)
    clean_luma = np.full((40, 60), luma(paper.astype(np.uint8)), np.uint8)  # a perfect model
    out = recolor(clean_luma, noisy).astype(float)
    assert np.abs(out - paper).mean() < 0.25 * np.abs(noisy - paper).mean()


def test_a_mismatched_colour_layer_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        recolor(np.zeros((4, 4), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_colour_stands_exactly_where_the_model_changed_no_luminance_nearby():
    rng = np.random.default_rng(2)
    color = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    gray = unclipped_luma(color).copy()  # what the model is given
    assert (gray != luma(color)).any()  # random channels clip: some are restored
    np.testing.assert_array_equal(recolor(gray, color), color)  # an identity model
    gray[5, 5] = 255 - gray[5, 5]  # one changed pixel: the filter's reach around it moves
    out = recolor(gray, color)
    moved = np.any(out != color, axis=2)
    assert moved[5, 5] and not moved[12:, :].any() and not moved[:, 12:].any()


def test_the_decoders_luminance_is_what_changes_are_measured_against():
    """The decoder hands recolor the luminance it gave the model (SourceInfo.luma), so the
    restoration is not computed twice; that luminance, not one computed again, decides."""
    rng = np.random.default_rng(4)
    color = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    given = unclipped_luma(color)
    denoised = given.copy()
    denoised[10, 10] ^= 0x40
    np.testing.assert_array_equal(recolor(denoised, color, denoised), color)  # told: unchanged
    with pytest.raises(ValueError, match="given luminance"):
        recolor(denoised, color, given[:-1])
    with pytest.raises(ValueError, match="given luminance"):  # not broadcast from one row
        ChromaRows().push(denoised, color, last=True, given=given[:1])
    _, info = to_gray(Image.fromarray(color, "RGB"), "PNG", {})
    np.testing.assert_array_equal(info.luma, given)


def test_a_large_image_is_filtered_in_bands_with_the_same_pixels(monkeypatch):
    from denoise_cli.files import chroma

    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (90, 37), dtype=np.uint8)
    color = rng.integers(0, 256, (90, 37, 3), dtype=np.uint8)
    whole = recolor(gray, color)
    monkeypatch.setattr(chroma, "BAND_PIXELS", 300)  # bands of 4 * CONTEXT rows
    np.testing.assert_array_equal(recolor(gray, color), whole)


@pytest.mark.parametrize("band_pixels", [1 << 20, 300])
def test_grey_input_comes_back_as_the_denoised_luminance_in_grey(monkeypatch, band_pixels):
    from denoise_cli.files import chroma

    monkeypatch.setattr(chroma, "BAND_PIXELS", band_pixels)
    rng = np.random.default_rng(4)
    noisy = rng.integers(0, 256, (90, 37), dtype=np.uint8)
    denoised = rng.integers(0, 256, (90, 37), dtype=np.uint8)  # a model that changed it all
    out = recolor(denoised, np.dstack([noisy] * 3))
    np.testing.assert_array_equal(out, np.dstack([denoised] * 3))


def test_bands_mixing_grey_and_colour_rows_give_the_whole_images_pixels():
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (60, 20), dtype=np.uint8)
    color = np.dstack([gray] * 3)
    color[25:28] = rng.integers(0, 256, (3, 20, 3), dtype=np.uint8)  # colour near a cut
    denoised = np.clip(gray.astype(int) + rng.integers(-9, 10, gray.shape), 0, 255).astype(np.uint8)
    whole = recolor(denoised, color)
    for band in (3, 7, 20, 22, 31):
        rows, out = ChromaRows(), []
        for y in range(0, 60, band):
            out.append(
                rows.push(denoised[y : y + band], color[y : y + band], last=y + band >= 60)[0]
            )
        np.testing.assert_array_equal(np.concatenate(out), whole, err_msg=f"band {band}")


def test_the_filter_never_holds_more_than_a_band_and_its_context(monkeypatch):
    """A tile row of a wide page comes in whole; the filter's float copies must not."""
    from denoise_cli.files import chroma

    seen = []
    real = chroma._recolor
    monkeypatch.setattr(chroma, "_recolor", lambda p, *a: seen.append(p.size) or real(p, *a))
    monkeypatch.setattr(chroma, "BAND_PIXELS", 50 * 40)
    rng = np.random.default_rng(6)
    gray = rng.integers(0, 256, (400, 40), dtype=np.uint8)
    color = rng.integers(0, 256, (400, 40, 3), dtype=np.uint8)
    rows = ChromaRows()
    rows.push(gray[:300], color[:300])  # one big push, as a tile row comes
    rows.push(gray[300:], color[300:], last=True)
    assert len(seen) >= 8 and max(seen) <= (50 + 2 * chroma.CONTEXT) * 40
