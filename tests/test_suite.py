"""The evaluation suite of `denoise-export compare`: every layout and noise for every method,
seeded noise, models run as the runtime runs them, false ink, the figure."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")

from PIL import Image

from denoise_cli.core.errors import UsageError
from denoise_cli.model.bundled import bundled_models
from denoise_export import compare as compare_mod
from denoise_export.suite import (
    cell_noise,
    checkpoint_runner,
    layout_counts,
    onnx_runner,
)
from denoise_train.scenes import LAYOUTS
from tests.helpers import identity_model

SEED_MODEL = bundled_models()["conv_denoiser"]


def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """One classical filter, no BM3D (where installed) and no speed timing: the rest of the
    suite as it runs."""
    monkeypatch.setattr(compare_mod, "CLASSICAL", {"median 3x3": compare_mod._median})
    monkeypatch.setattr(compare_mod, "_bm3d", lambda: None)
    monkeypatch.setattr(compare_mod, "_onnx_facts", lambda onnx: (len(onnx), 1.0))


def test_every_layout_and_condition_for_every_method(tmp_path, clean_digits, monkeypatch):
    _fast(monkeypatch)
    identity = identity_model(tmp_path / "identity.onnx")
    counts = {name: 4 for name in LAYOUTS} | {"single": None}
    result = compare_mod.compare(
        [identity, SEED_MODEL], clean_digits[:, None], classical_limit=2, layouts=counts
    )
    conditions = [f"{k} {v:g}" for k, v in compare_mod.CONDITIONS]
    assert [r["method"] for r in result["rows"]] == [
        "noisy input",
        "median 3x3",
        "identity (? ?)",
        "conv_denoiser (gaussian 0.5)",
    ]
    assert result["seed_model"] == "conv_denoiser (gaussian 0.5)"
    for row in result["rows"]:
        assert set(row["layouts"]) == set(LAYOUTS)
        for layout, cells in row["layouts"].items():
            wanted = conditions if layout in ("single", "page", "blank") else ["gaussian 0.5"]
            assert list(cells) == wanted, (row["method"], layout)
            for cell in cells.values():
                assert np.isfinite(cell["psnr"]) and 0 < cell["ssim"] <= 1
                if layout == "blank":
                    assert 0.0 <= cell["false_ink"] <= 1.0
        assert row["scores"] == row["layouts"]["single"]
    rows = {r["method"]: r for r in result["rows"]}
    single = rows["median 3x3"]["layouts"]["single"]["gaussian 0.5"]
    assert single["images"] == 2 and result["layouts"]["single"]["images"] == 16
    assert rows["median 3x3"]["layouts"]["page"]["gaussian 0.5"]["images"] == 1  # by pixels
    ink = {name: r["layouts"]["blank"]["gaussian 0.5"]["false_ink"] for name, r in rows.items()}
    assert ink["identity (? ?)"] > 0.25 and ink["conv_denoiser (gaussian 0.5)"] < 0.02
    assert ink["identity (? ?)"] == pytest.approx(ink["noisy input"])
    verdict = rows["identity (? ?)"]["vs_seed"]
    assert verdict["meets_target"] is False and verdict["min_margin_db"] < -5
    assert verdict["min_at"] in verdict["margins_db"]
    assert verdict["reference_images"] == 16

    written = compare_mod.write(result, tmp_path / "out")
    assert [p.name for p in written] == ["compare.json", "compare.md", "compare.png"]
    data = json.loads(written[0].read_text())  # strict JSON: no arrays, no Infinity
    assert "samples" not in data and data["rows"][0]["layouts"]["blank"]
    text = written[1].read_text()
    assert "### Layouts at gaussian 0.5" in text and "| blank: false ink |" in text
    assert "### Noise conditions, page layout" in text
    assert "*identity (? ?) vs seed (dB)*" in text and "| identity (? ?) | " in text
    with Image.open(written[2]) as png:
        png.verify()
    with Image.open(written[2]) as png:
        # One row per layout, columns: clean, noisy, then each model.
        assert png.format == "PNG" and png.height > 9 * 28 and png.width > 4 * 28


def test_bm3d_runs_on_as_many_images_as_asked_and_not_at_all_for_zero(
    tmp_path, clean_digits, monkeypatch
):
    """`--classical-limit 0` ran BM3D on 100 images, and the table always said 100."""
    _fast(monkeypatch)
    seen: list[int] = []
    monkeypatch.setattr(compare_mod, "_bm3d", lambda: lambda x: seen.append(len(x)) or x)
    identity = identity_model(tmp_path / "identity.onnx")
    for limit in (0, 3):
        seen.clear()
        result = compare_mod.compare(
            [identity], clean_digits[:, None], classical_limit=2, bm3d_limit=limit,
            conditions=[("gaussian", 0.5)], baseline=identity,
        )  # fmt: skip
        methods = [r["method"] for r in result["rows"]]
        assert ("BM3D" in methods) == (limit > 0) and seen == ([3] if limit else [])
        assert f"BM3D: {limit} (0: not installed" in compare_mod.markdown(result)


def test_models_keep_sizes_and_polarity(clean_digits):
    """Odd sizes, mixed in one call, come back at their sizes; dark-on-light images go through
    the same inversion in the checkpoint path as in the runtime."""
    import torch

    from denoise_train.loop import predict
    from denoise_train.models import create_model, get_arch

    torch.manual_seed(0)
    model = create_model("unet_tiny")
    arch = get_arch("unet_tiny")
    run_pt = checkpoint_runner(
        lambda x: predict(model, x, torch.device("cpu")), arch.size_multiple, True
    )
    rng = np.random.default_rng(0)
    digit = clean_digits[0]
    odd = rng.random((30, 45), dtype=np.float32)
    inverted = 1.0 - np.pad(digit, 3)  # 34x34, dark ink on light paper
    images = [digit, odd, inverted, clean_digits[1]]
    out = run_pt(images)
    assert [o.shape for o in out] == [i.shape for i in images]
    x = np.pad(1.0 - inverted, ((0, 2), (0, 2)))[None, None]  # the multiple of 4 is 36
    expected = 1.0 - predict(model, x, torch.device("cpu"))[0, 0, :34, :34]
    np.testing.assert_allclose(out[2], expected, atol=1e-6)
    for path in (SEED_MODEL, bundled_models()["unet_scenes"]):
        restored = onnx_runner(path)(images)
        assert [o.shape for o in restored] == [i.shape for i in images]
        assert restored[2].mean() > 0.5  # left light: inverted there and back


def test_noise_is_seeded_per_cell(clean_digits):
    images = list(clean_digits)
    a = cell_noise(images, "single", ("gaussian", 0.5), 7)
    again = cell_noise(images[:5], "single", ("gaussian", 0.5), 7)
    for x, y in zip(a[:5], again, strict=True):
        np.testing.assert_array_equal(x, y)  # the first k images: the same whatever the count
    other_cell = cell_noise(images, "inverted", ("gaussian", 0.5), 7)
    other_level = cell_noise(images, "single", ("gaussian", 0.3), 7)
    assert not np.array_equal(a[0], other_cell[0]) and not np.array_equal(a[0], other_level[0])
    assert not np.array_equal(a[0], cell_noise(images, "single", ("gaussian", 0.5), 8)[0])


def test_layout_counts():
    counts = layout_counts()
    assert list(counts) == list(LAYOUTS) and counts["single"] is None and counts["page"] == 100
    assert layout_counts(["page", "blank"], ["page=7"]) == {"page": 7, "blank": 100}
    assert layout_counts(["single"], ["scale4=3"]) == {"single": None, "scale4": 3}
    with pytest.raises(UsageError, match="unknown layout 'pages'; known: single, string"):
        layout_counts(["pages"])
    for bad in ("page", "page=0", "page=x", "nope=3"):
        with pytest.raises(UsageError, match="expected NAME=N"):
            layout_counts(None, [bad])


@pytest.mark.slow
def test_checkpoint_and_its_export_score_alike(tmp_path, tiny_mnist):
    """A checkpoint (PyTorch, the suite's padding and polarity) and its ONNX export (the
    runtime's Denoiser) give the same scores on every cell; the full classical set runs."""
    from typer.testing import CliRunner

    from denoise_export.cli import app as export_app
    from denoise_train.config import TrainConfig
    from denoise_train.loop import fit
    from denoise_train.mnist import load_split

    train = load_split("train", tiny_mnist, download=False)[0]
    ckpt = tmp_path / "unet_tiny.pt"
    config = TrainConfig(arch="unet_tiny", epochs=1, batch_size=16, val_size=100, threads=1)
    fit(config, train, ckpt, log=lambda m: None, progress=False)
    onnx_path = tmp_path / "mine.onnx"
    exported = CliRunner().invoke(
        export_app, [str(ckpt), "-o", str(onnx_path), "--data-dir", str(tiny_mnist)]
    )
    assert exported.exit_code == 0, exported.output
    clean = load_split("test", tiny_mnist, download=False)[0][:20]
    counts = {name: 3 for name in LAYOUTS}
    result = compare_mod.compare([ckpt, onnx_path], clean, classical_limit=2, layouts=counts)
    rows = {r["method"]: r for r in result["rows"]}
    assert "non-local means" in rows and result["seed_model"] == "conv_denoiser (gaussian 0.5)"
    a, b = rows["unet_tiny (gaussian 0.5)"], rows["mine (gaussian 0.5)"]
    for layout, cells in a["layouts"].items():
        for cond, cell in cells.items():
            assert cell["psnr"] == pytest.approx(b["layouts"][layout][cond]["psnr"], abs=1e-3)
    assert a["vs_seed"]["min_at"] is not None
    written = compare_mod.write(result, tmp_path / "out")
    assert (tmp_path / "out" / "compare.png") in written
