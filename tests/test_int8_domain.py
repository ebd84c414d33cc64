"""INT8 off MNIST: the full-resolution stages stay float32, and a world model's export checks
its INT8 file on world canvases, where MNIST's black-and-white test digits saw no loss."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

pytest.importorskip("torch")

from denoise_export import variants
from denoise_export.cli import app
from denoise_export.onnx_export import ExportError
from denoise_export.variants import (
    DomainSample,
    Reference,
    choose_variants,
    full_resolution_decoder,
    input_conv_and_tail,
    int8_float_nodes,
    to_int8,
)
from denoise_train.config import TrainConfig
from denoise_train.loop import fit
from denoise_train.mnist import load_split
from tests.helpers import tiny_world_config


def _steep_sigmoid_model() -> onnx.ModelProto:
    """noisy -> 1x1 conv (two ReLU channels) -> 1x1 conv to logits 12 (x - 0.5) -> Sigmoid.
    Its output layer's logits span [-6, 6]: uint8 steps of 0.047 there move mid-grey outputs
    by up to ~3 levels, and MNIST-like black or white pixels (saturated) by nothing."""
    w1 = np.array([[[[1.0]]], [[[-1.0]]]], np.float32)  # relu(x), relu(-x)
    w2 = np.array([[[[12.0]], [[-12.0]]]], np.float32)
    nodes = [
        helper.make_node("Conv", ["noisy", "w1"], ["h"], name="conv_in"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2", "b2"], ["logits"], name="conv_out"),
        helper.make_node("Sigmoid", ["logits"], ["denoised"], name="sigmoid"),
    ]
    shape = ["N", 1, "H", "W"]
    graph = helper.make_graph(
        nodes,
        "steep",
        [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, shape)],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(np.array([-6.0], np.float32), "b2"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _session(proto: onnx.ModelProto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return _session(proto).run(None, {"noisy": x})[0]


def _digits(n: int = 64) -> np.ndarray:
    """Black-and-white 'digits': MNIST's world, where the Sigmoid saturates."""
    rng = np.random.default_rng(0)
    return (rng.random((n, 1, 28, 28)) < 0.2).astype(np.float32)


def _grey_canvases(n: int = 16) -> np.ndarray:
    """Smooth grey ramps around mid-level: paper and display backgrounds."""
    ramp = np.linspace(0.4, 0.6, 32, dtype=np.float32)
    base = np.broadcast_to(ramp[None, :], (32, 32))
    return np.stack([base + 0.01 * i for i in range(n)])[:, None].astype(np.float32)


@pytest.fixture(scope="module")
def calibrated():
    """The steep model, and its INT8 files under the old rule and the export's rule."""
    proto = _steep_sigmoid_model()
    calibration = np.concatenate([_digits(32), np.random.default_rng(1).random((32, 1, 28, 28))])
    calibration = calibration.astype(np.float32)
    old = to_int8(proto, calibration, "onnxruntime", float_nodes=input_conv_and_tail)
    new = to_int8(proto, calibration, "onnxruntime")
    return proto, old, new


def test_the_output_layer_stays_float32_and_grey_survives(calibrated):
    proto, old, new = calibrated
    assert int8_float_nodes(proto.graph) == ["conv_in", "conv_out", "sigmoid"]
    grey = _grey_canvases()
    fp32 = _run(proto, grey)
    # The old rule quantized the logits: grey levels move by whole levels (the failure the
    # rule fixes, kept visible here so this test can fail).
    assert np.abs(_run(old, grey) - fp32).max() > 1.5 / 255
    assert np.abs(_run(new, grey) - fp32).max() < 0.5 / 255
    digits = _digits()
    assert np.abs(_run(old, digits) - _run(proto, digits)).max() < 0.5 / 255


def _reference(proto: onnx.ModelProto, domain: DomainSample | None) -> Reference:
    """Noisy black-and-white test digits, as the export checks every file on."""
    clean = _digits()
    noise = np.random.default_rng(2).normal(0, 0.3, clean.shape)
    noisy = np.clip(clean + noise, 0, 1).astype(np.float32)
    return Reference(
        model=None,
        proto=proto,
        metadata={},
        clean=clean,
        inputs=noisy,
        outputs=_run(proto, noisy),
        calibration=clean[:0],
        opset=18,
        profile="onnxruntime",
        fully_convolutional=True,
        domain=domain,
    )


def test_int8_check_fails_on_the_world_where_the_test_digits_pass(calibrated):
    proto, old, new = calibrated
    grey = _grey_canvases()
    # Canvases the fp32 graph restores perfectly (its own outputs as the clean images).
    fp32 = _run(proto, grey)
    domain = DomainSample("world", fp32, grey, fp32)
    int8 = next(v for v in choose_variants(".onnx", int8=True) if v.name == "int8")
    with pytest.raises(ExportError, match=r"int8: PSNR on 16 world canvases drops [\d.]+ dB"):
        int8.verify(_reference(proto, domain), _session(old))
    # The same file passes without a world sample: the test digits alone do not show it.
    assert int8.verify(_reference(proto, None), _session(old)).domain_psnr_vs_fp32 is None
    scores = int8.verify(_reference(proto, domain), _session(new))
    assert abs(scores.domain_psnr_vs_fp32) < 0.05


@pytest.fixture(scope="module")
def world_ckpt(tmp_path_factory, tiny_mnist):
    images = load_split("train", tiny_mnist, download=False)[0]
    config = tiny_world_config("unet_tiny")
    out = tmp_path_factory.mktemp("world") / "w.pt"
    fit(config, images, out, log=lambda m: None, progress=False)
    return out


def test_world_model_export_checks_and_records_world_canvases(
    tmp_path, world_ckpt, tiny_mnist, monkeypatch
):
    # A 3-step model's INT8 margin is the CPU's int8 kernels' to decide: this test is about
    # what the export records, not whether it passes (the check is the test above).
    monkeypatch.setattr(variants, "INT8_MAX_PSNR_DROP", 5.0)
    out = tmp_path / "w.onnx"
    args = [world_ckpt, "-o", out, "--int8", "--data-dir", tiny_mnist, "--runtimes", "none"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "world: 128 canvases, PSNR" in result.output
    assert "dB vs fp32 on world canvases" in result.output
    header = next(line for line in result.stdout.splitlines() if line.startswith("| variant"))
    assert "| world vs fp32 (dB) |" in header
    fp32 = _session(onnx.load(str(out))).get_modelmeta().custom_metadata_map
    int8 = _session(onnx.load(str(tmp_path / "w.int8.onnx"))).get_modelmeta()
    int8 = int8.custom_metadata_map
    assert 0 < float(fp32["world_psnr_db"]) <= 50
    assert int8["fp32_world_psnr_db"] == fp32["world_psnr_db"]
    drop = float(fp32["world_psnr_db"]) - float(int8["world_psnr_db"])
    row = next(line for line in result.stdout.splitlines() if line.startswith("| int8 |"))
    assert float(row.split(" | ")[6]) == pytest.approx(-drop, abs=2e-3)


def test_an_mnist_model_gets_no_world_check(tmp_path, tiny_mnist):
    images = load_split("train", tiny_mnist, download=False)[0]
    ckpt = tmp_path / "c.pt"
    config = TrainConfig(arch="conv_denoiser", epochs=1, batch_size=16, val_size=50, threads=1)
    fit(config, images, ckpt, log=lambda m: None, progress=False)
    out = tmp_path / "c.onnx"
    args = [ckpt, "-o", out, "--int8", "--data-dir", tiny_mnist, "--runtimes", "none"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "world" not in result.output
    assert "world_psnr_db" not in _session(onnx.load(str(out))).get_modelmeta().custom_metadata_map


def test_int8_of_an_exported_unet_keeps_its_full_resolution_convolutions(
    tmp_path, world_ckpt, tiny_mnist
):
    """On a real export: the convolutions of both full-resolution stages read float weights,
    the lower-resolution ones dequantized int8 weights."""
    from denoise_export.build import export_checkpoint

    digits = load_split("test", tiny_mnist, download=False)
    out = tmp_path / "u.onnx"
    export_checkpoint(world_ckpt, out, digits[0][:64], digits[0][:64], int8=True, runtimes=())
    fp32, int8 = onnx.load(str(out)), onnx.load(str(tmp_path / "u.int8.onnx"))
    kept = set(int8_float_nodes(fp32.graph))
    assert "Sigmoid" in {n.op_type for n in fp32.graph.node if n.name in kept}
    dequantized = {n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
    convs = {n.name: n.input[1] in dequantized for n in int8.graph.node if n.op_type == "Conv"}
    float_convs = {n for n, quantized in convs.items() if not quantized}
    assert float_convs == {n.name for n in fp32.graph.node if n.op_type == "Conv"} & kept
    assert len(float_convs) >= 3 and len(float_convs) < len(convs)


def test_the_rewritten_output_convolution_stays_float_and_dense_layers_do_not():
    """The onnxruntime profile writes the seed's output convolution as a depthwise Conv, a
    ReduceSum and a bias Add: all three stay float32. A dense model's Gemm is quantized."""
    from denoise_cli.model.bundled import resolve_model

    seed = onnx.load(str(resolve_model("conv_denoiser")))
    assert seed.graph.node[-1].op_type == "Sigmoid"
    kept = [
        n.op_type for n in seed.graph.node if n.name in set(full_resolution_decoder(seed.graph))
    ]
    assert kept[0] == "Conv" and "ReduceSum" in kept and kept[-1] == "Sigmoid"
    dense = helper.make_graph(
        [
            helper.make_node("Flatten", ["noisy"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], name="gemm"),
            helper.make_node("Sigmoid", ["logits"], ["denoised"], name="sigmoid"),
        ],
        "dense",
        [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [1, 784])],
        [
            numpy_helper.from_array(np.zeros((784, 784), np.float32), "w"),
            numpy_helper.from_array(np.zeros(784, np.float32), "b"),
        ],
    )
    assert full_resolution_decoder(dense) == []
