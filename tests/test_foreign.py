"""Foreign digit sets (export/foreign.py) and their scoring (`denoise-export foreign`,
`compare --foreign`): seeded, printed only in held-out fonts, models run through the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("scipy")
pytest.importorskip("skimage")
pytest.importorskip("matplotlib")  # the held-out fonts ship with it

from denoise_cli.core.errors import UsageError
from denoise_export import foreign
from denoise_export.cli import app
from denoise_export.foreign_eval import bm3d_filter, evaluate, write
from denoise_train.world import HELD_OUT_FONTS, TRAIN_FONTS
from tests.helpers import identity_model

SHAPES = {
    "display": foreign.DISPLAY_SHAPE,
    "print": foreign.PRINT_SHAPE,
    "colour": (*foreign.COLOUR_SHAPE, 3),
    "tiny": (8, 8),
}


def blur_model(path: Path) -> Path:
    """A real (tiny) ONNX denoiser: a 3x3 box blur, with the metadata the runtime reads."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((1, 1, 3, 3), 1 / 9, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["noisy", "w"], ["denoised"], pads=[1, 1, 1, 1])],
        "blur",
        [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model.metadata_props.add(key="polarity", value="light-on-dark")
    onnx.save(model, str(path))
    return path


def test_held_out_fonts_are_disjoint_from_the_training_fonts():
    assert not set(HELD_OUT_FONTS) & set(TRAIN_FONTS)
    assert {*foreign.PRINT_FONTS, foreign.STAMP_FONT} <= set(HELD_OUT_FONTS)
    with pytest.raises(UsageError, match="HELD_OUT_FONTS"):
        foreign.held_out_font(TRAIN_FONTS[0], 20)


@pytest.mark.parametrize("name", foreign.SET_NAMES)
def test_sets_are_seeded_and_a_prefix_does_not_depend_on_the_count(name, clean_digits):
    a = foreign.build_set(name, 3, clean_digits, seed=7)
    b = foreign.build_set(name, 5, clean_digits, seed=7)
    other = foreign.build_set(name, 3, clean_digits, seed=8)
    for x, y in zip(a.samples, b.samples[:3], strict=True):
        assert np.array_equal(x.clean, y.clean) and np.array_equal(x.noisy, y.noisy)
        assert np.array_equal(x.background, y.background)
    assert not np.array_equal(a.samples[0].clean, other.samples[0].clean)
    kind = name.removesuffix("-clean")
    for s in a.samples:
        assert s.clean.shape == s.noisy.shape == SHAPES[kind]
        assert s.background.shape == SHAPES[kind][:2] and s.background.any()
        assert s.noisy.min() >= 0 and s.noisy.max() <= 1
        if a.clean_only:
            assert np.array_equal(s.noisy, s.clean)
        else:
            assert np.abs(s.noisy - s.clean).mean() > 0.03  # really noisy


def test_tiny_scans_have_uci_s_17_grey_levels_and_colour_sets_8_bits(clean_digits):
    tiny = foreign.build_set("tiny", 20, clean_digits)
    levels = np.concatenate([s.clean.ravel() for s in tiny.samples]) * 16
    assert np.allclose(levels, np.round(levels)) and levels.max() == 16
    colour = foreign.build_set("colour", 4, clean_digits)
    for s in colour.samples:
        for img in (s.clean, s.noisy):
            assert np.allclose(img * 255, np.round(img * 255), atol=1e-3)
        ink = s.clean[~s.background]
        assert np.abs(ink[:, 2] - ink[:, 0]).max() > 0.3  # blue or red ink, not grey


def test_unknown_set_and_bad_count_are_refused(clean_digits):
    with pytest.raises(UsageError, match="unknown foreign set 'lcd'"):
        foreign.build_set("lcd", 2, clean_digits)
    with pytest.raises(UsageError, match="count must be >= 1"):
        foreign.build_set("print", 0, clean_digits)


def test_an_identity_model_does_no_harm_through_the_runtime(tmp_path, clean_digits):
    """Clean grey images come back exactly (capped 100 dB, no shift); clean colour ones keep
    their luminance within the runtime's 8-bit rounding; blur is scored below the input."""
    sets = [
        foreign.build_set(n, 2, clean_digits) for n in ("display-clean", "colour-clean", "print")
    ]
    models = [identity_model(tmp_path / "same.onnx"), blur_model(tmp_path / "blur.onnx")]
    result = evaluate(sets, models, bm3d_limit=0)
    grey = result["sets"]["display-clean"]["scores"]["same"]
    assert grey["psnr"] == 100.0 and grey["background_shift"] == 0.0
    colour = result["sets"]["colour-clean"]["scores"]["same"]
    assert colour["psnr"] > 45 and abs(colour["background_shift"]) <= 1
    assert "chroma_error" in colour and "psnr_rgb" in colour
    blurred = result["sets"]["display-clean"]["scores"]["blur"]
    assert blurred["psnr"] < 40 and blurred["seconds_per_image"] > 0
    assert result["sets"]["print"]["scores"]["noisy input"]["psnr"] < 25
    written = write(result, tmp_path / "out")
    assert {p.name for p in written} >= {"foreign.json", "foreign-colour-clean.png"}
    sheet = Image.open(tmp_path / "out" / "foreign-colour-clean.png")
    assert sheet.mode == "RGB"


def test_bm3d_survives_8x8_scans_and_colour():
    pytest.importorskip("bm3d")
    run = bm3d_filter()
    rng = np.random.default_rng(0)
    tiny = np.clip(0.5 + 0.2 * rng.standard_normal((8, 8)), 0, 1).astype(np.float32)
    assert run(tiny).shape == (8, 8)  # bm3d itself crashes the process on 8x8
    rgb = np.clip(0.5 + 0.1 * rng.standard_normal((16, 20, 3)), 0, 1).astype(np.float32)
    assert run(rgb).shape == (16, 20, 3)


def test_foreign_command_writes_tables_json_and_sheets(tmp_path, tiny_mnist):
    model = blur_model(tmp_path / "blur.onnx")
    out = tmp_path / "out"
    args = ["foreign", str(model), "--data-dir", str(tiny_mnist), "--limit", "2"]
    result = CliRunner().invoke(
        app, [*args, "--bm3d-limit", "0", "--out-dir", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "foreign.json").read_text())
    assert list(data["sets"]) == list(foreign.SET_NAMES) and data["count"] == 2
    for name in foreign.SET_NAMES:
        scores = data["sets"][name]["scores"]
        assert list(scores) == ["noisy input", "median 3x3", "non-local means", "blur"]
        assert scores["blur"]["images"] == 2 and len(scores["blur"]["psnr_per_image"]) == 2
        assert (out / f"foreign-{name}.png").is_file()
    assert "### display-clean (2 images, 40x160)" in (out / "foreign.md").read_text()
    again = CliRunner().invoke(
        app, [*args, "--bm3d-limit", "0", "--out-dir", str(tmp_path / "again"), "--set", "tiny"]
    )
    assert again.exit_code == 0, again.output
    rerun = json.loads((tmp_path / "again" / "foreign.json").read_text())
    assert list(rerun["sets"]) == ["tiny"]
    for method, scores in rerun["sets"]["tiny"]["scores"].items():  # the same images again
        assert scores["psnr_per_image"] == data["sets"]["tiny"]["scores"][method]["psnr_per_image"]


def test_checkpoints_are_refused_with_a_hint(tmp_path, tiny_mnist):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not used")
    args = ["foreign", str(ckpt), "--data-dir", str(tiny_mnist), "--limit", "1"]
    result = CliRunner().invoke(app, [*args, "--out-dir", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "export the checkpoint first" in result.output
    result = CliRunner().invoke(app, ["compare", str(ckpt), "--foreign", "5"])
    assert result.exit_code == 2
    assert "--foreign scores exported models" in result.output


@pytest.mark.slow
def test_compare_foreign_adds_the_foreign_sets(tmp_path, tiny_mnist, monkeypatch):
    from denoise_export import compare as compare_mod

    monkeypatch.setattr(compare_mod, "_bm3d", lambda: None)  # the suite's BM3D: minutes
    model = blur_model(tmp_path / "blur.onnx")
    out = tmp_path / "out"
    args = ["compare", str(model), "--data-dir", str(tiny_mnist), "--limit", "16"]
    args += ["--layout", "single", "--classical-limit", "2", "--out-dir", str(out)]
    result = CliRunner().invoke(app, [*args, "--foreign", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (out / "compare.json").is_file()
    data = json.loads((out / "foreign" / "foreign.json").read_text())
    assert list(data["sets"]) == list(foreign.SET_NAMES) and data["count"] == 1
    assert "blur" in data["sets"]["print"]["scores"]
    assert "### print (1 images, 48x192)" in result.output
