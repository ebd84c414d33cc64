"""Guided smoothing: the guided filter as written, quiet on clean inputs, flattening what the
network left in flat regions, and local enough that tiled runs stitch exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from denoise_cli.model.session import Denoiser  # noqa: E402
from denoise_export.cli import app  # noqa: E402
from denoise_export.onnx_export import export_model, receptive_radius  # noqa: E402
from denoise_train.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from denoise_train.config import TrainConfig  # noqa: E402
from denoise_train.guided_smoothing import (  # noqa: E402
    FILTER_RADIUS,
    NOISE_RADIUS,
    VARIANCE_FLOOR,
    GuidedSmoothing,
    box,
)
from denoise_train.loop import fit  # noqa: E402
from denoise_train.mnist import load_split  # noqa: E402
from denoise_train.models import create_model  # noqa: E402
from denoise_train.onnx_import import model_from_onnx  # noqa: E402
from tests.helpers import assert_exports_with_dynamic_sizes  # noqa: E402


def _box_reference(image: np.ndarray, r: int) -> np.ndarray:
    """The mean over each window's pixels that lie inside the image, pixel by pixel."""
    h, w = image.shape
    out = np.empty_like(image)
    for y in range(h):
        for x in range(w):
            out[y, x] = image[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].mean()
    return out


def _filter_reference(x: np.ndarray, y: np.ndarray, gain: float) -> np.ndarray:
    """He et al.'s guided filter of y guided by itself, eps from the removed noise."""
    sigma = _box_reference(np.abs(x - y), NOISE_RADIUS) * gain * math.sqrt(math.pi / 2)
    mean = _box_reference(y, FILTER_RADIUS)
    var = np.maximum(_box_reference(y * y, FILTER_RADIUS) - mean**2, 0) + VARIANCE_FLOOR
    a = var / (var + sigma**2)
    b = mean - a * mean
    out = _box_reference(a, FILTER_RADIUS) * y + _box_reference(b, FILTER_RADIUS)
    return np.clip(out, 0, 1)


@pytest.mark.parametrize("shape", [(3, 4), (9, 23), (20, 17)])
def test_box_is_the_mean_of_the_window_inside_the_image(shape):
    image = np.random.default_rng(0).random(shape)
    for r in (FILTER_RADIUS, NOISE_RADIUS):
        got = box(torch.from_numpy(image)[None, None], r)[0, 0].numpy()
        assert np.abs(got - _box_reference(image, r)).max() < 1e-12


def test_the_filter_is_he_et_al_guided_filter_with_eps_from_the_residual():
    rng = np.random.default_rng(1)
    y = rng.random((19, 26))
    x = np.clip(y + rng.normal(0, 0.1, y.shape), 0, 1)
    block = GuidedSmoothing().double()
    with torch.no_grad():
        block.scale.fill_(0.4 * math.sqrt(math.pi / 2))
        got = block(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])
    want = _filter_reference(x, y, 0.4)
    assert np.abs(got[0, 0].numpy() - want).max() < 1e-12


def _stroke_image(rng: np.random.Generator) -> np.ndarray:
    """Grey paper with a faint texture (1-2 grey levels), dark strokes and a faint guide line."""
    image = 0.8 + rng.normal(0, 0.006, (48, 64))
    image[10:38, 20:24] = 0.15
    image[10:14, 20:44] = 0.15
    image[30, :] -= 0.04  # a faint printed rule
    return np.clip(image, 0, 1)


def test_a_clean_input_comes_back_within_a_grey_level():
    """Where the network removed nothing, there is no noise to smooth: texture, faint rules and
    strokes stay (the do-no-harm check of issue 25)."""
    image = torch.from_numpy(_stroke_image(np.random.default_rng(2)))[None, None]
    with torch.no_grad():
        out = GuidedSmoothing().double()(image, image)
    assert (out - image).abs().max() * 255 < 1.0


def test_flat_regions_lose_the_blotches_the_network_left_and_edges_stay():
    """y: clean strokes plus low-frequency blotches (what the U-Net leaves at sigma 0.15);
    x: y plus that noise. The filter flattens the paper and keeps the strokes' levels."""
    rng = np.random.default_rng(3)
    clean = np.full((48, 64), 0.8)
    clean[10:38, 20:24] = clean[10:14, 20:44] = 0.15
    blotches = torch.nn.functional.interpolate(
        torch.from_numpy(rng.normal(0, 0.02, (1, 1, 24, 32))), size=(48, 64), mode="bilinear"
    )[0, 0].numpy()
    y = clean + blotches
    x = np.clip(y + rng.normal(0, 0.15, y.shape), 0, 1)
    with torch.no_grad():
        out = GuidedSmoothing().double()(
            torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]
        )
    out = out[0, 0].numpy()
    paper = np.ones_like(clean, bool)
    paper[6:42, 16:48] = False
    assert np.std(out[paper]) < 0.6 * np.std(y[paper])
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean((y - clean) ** 2)
    assert abs(out[20:30, 21:23].mean() - 0.15) < 0.02  # the stroke keeps its level


def test_unet_checkpoint_initialises_it_and_only_the_gain_is_new():
    plain = create_model("unet_lite_near").eval()
    smooth = create_model("unet_lite_gs").eval()
    missing, unexpected = smooth.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing == ["smoothing.scale"]
    x = torch.rand(2, 1, 36, 44)
    with torch.no_grad():
        y, out = plain(x), smooth(x)
    assert torch.equal(out, GuidedSmoothing()(x, y))


def test_receptive_radius_grows_by_the_filter_reach():
    """At the worst pooling phase, by both boxes' radii; at the centre pixel alone the
    U-Net's own reach is a pixel or two shorter (the pooling grid)."""
    plain = receptive_radius(create_model("unet_lite_near"), phases=4)
    smooth = receptive_radius(create_model("unet_lite_gs"), phases=4)
    assert (plain, smooth) == (35, 35 + NOISE_RADIUS + FILTER_RADIUS)
    assert receptive_radius(create_model("unet_lite_gs")) < smooth


def test_exports_with_dynamic_sizes():
    assert_exports_with_dynamic_sizes(create_model("unet_lite_gs"))


def test_trained_model_tiles_exactly_and_imports_back_from_onnx(tmp_path, tiny_mnist):
    """The exported radius covers the filter, so tiles of 32 join to the whole-image result;
    the file rebuilds the model (what adapt does with a bundled default), gain included."""
    images = load_split("train", tiny_mnist, download=False)[0]
    ckpt = tmp_path / "gs.pt"
    config = TrainConfig(arch="unet_lite_gs", epochs=1, batch_size=16, lr=5e-3, val_size=32)
    fit(config, images[:128], ckpt, log=lambda m: None, progress=False)
    out = tmp_path / "gs.onnx"
    args = [str(ckpt), "-o", str(out), "--data-dir", str(tiny_mnist), "--runtimes", "none"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    meta = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    assert int(meta["receptive_field_radius"]) == 35 + NOISE_RADIUS + FILTER_RADIUS

    rng = np.random.default_rng(5)
    image = np.clip(0.7 + rng.normal(0, 0.2, (150, 171)), 0, 1).astype(np.float32)
    whole = Denoiser(out, tile=1024).denoise([image])[0]
    tiled = Denoiser(out, tile=32).denoise([image])[0]
    assert np.abs(whole - tiled).max() < 1e-5

    rebuilt, arch, _ = model_from_onnx(out)
    assert arch == "unet_lite_gs"
    trained = model_from_checkpoint(load_checkpoint(ckpt))
    assert rebuilt.smoothing.scale.item() == pytest.approx(trained.smoothing.scale.item())
    assert rebuilt.smoothing.scale.item() != pytest.approx(0.25 * math.sqrt(math.pi / 2))


def test_int8_files_keep_the_smoothing_in_float32():
    """Quantized, box(y^2) - box(y)^2 cancels into noise (foreign displays: 28.0 -> 20.2 dB):
    every node after the output's Sigmoid stays float32, with no QDQ pair inside."""
    import onnx

    from denoise_export.variants import output_tail, to_int8

    proto = export_model(create_model("unet_lite_gs").eval(), True, size_multiple=4)
    tail_names = set(output_tail(proto.graph))
    calibration = np.random.default_rng(6).random((16, 1, 28, 28), dtype=np.float32)
    inferred = onnx.shape_inference.infer_shapes(to_int8(proto, calibration))
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    tail = [n for n in inferred.graph.node if n.name in tail_names]
    assert len(tail) == len(tail_names) and "AveragePool" in {n.op_type for n in tail}
    tail_outputs = {name for n in tail for name in n.output}
    for node in inferred.graph.node:
        if node.op_type in ("QuantizeLinear", "Cast"):
            assert not tail_outputs & set(node.input), node.name  # nothing re-typed inside
    for name in tail_outputs:
        assert types.get(name, onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT, name


class _NearlyIdentity(torch.nn.Module):
    """A stand-in network for the filter: y slightly off x, as a trained one's output is."""

    def __init__(self) -> None:
        super().__init__()
        self.smoothing = GuidedSmoothing()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.smoothing(x, x * 0.998 + 0.001)


@pytest.mark.parametrize("level", [0.0, 0.5, 0.85, 1.0])
def test_flat_and_faintly_textured_images_export_within_float32_tolerance(level):
    """box(y^2) - box(y)^2 rounds to ~1e-7 near white; the variance floor keeps that from
    deciding the output (with the floor under the noise term alone onnxruntime and PyTorch
    differed by 4.7e-5 on white images)."""
    proto = export_model(_NearlyIdentity().eval(), True, size_multiple=4)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    exact = _NearlyIdentity().double().eval()  # the same initial gain, in float64
    rng = np.random.default_rng(7)
    flat = np.full((2, 1, 36, 100), level, np.float32)
    faint = np.clip(flat + rng.normal(0, 0.004, flat.shape), 0, 1).astype(np.float32)
    for x in (flat, faint):
        with torch.no_grad():
            want = exact(torch.from_numpy(x).double()).numpy()
        (got,) = session.run(None, {"noisy": x})
        assert np.abs(got - want).max() < 1e-5
        assert np.abs(got - x).max() * 255 < 1.0  # nothing to smooth: it stays as it came


def test_bf16_training_filters_in_float32():
    """Under bfloat16 autocast the filter still computes in float32: what it learns is what
    the float32 export computes."""
    rng = np.random.default_rng(8)
    y = torch.from_numpy(np.clip(0.8 + rng.normal(0, 0.01, (1, 1, 24, 24)), 0, 1)).float()
    x = torch.from_numpy(np.clip(y.numpy() + rng.normal(0, 0.1, y.shape), 0, 1)).float()
    block = GuidedSmoothing()
    y16, x16 = y.bfloat16(), x.bfloat16()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = block(x16, y16)
    with torch.no_grad():
        want = block(x16.float(), y16.float())
    assert got.dtype == torch.float32 and torch.equal(got, want)
