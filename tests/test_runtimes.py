"""Exported files in the runtimes edge users deploy with: OpenVINO, OpenCV, tract, onnx.reference.

These engines are pip wheels (the `edge` extra); CI installs them, so there a missing one is a
failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from typer.testing import CliRunner  # noqa: E402

from denoise_export import runtimes  # noqa: E402
from denoise_export.cli import app  # noqa: E402
from denoise_train.checkpoint import file_sha256  # noqa: E402
from denoise_train.config import TrainConfig  # noqa: E402
from denoise_train.loop import fit  # noqa: E402
from denoise_train.mnist import load_split  # noqa: E402
from tests.helpers import write_idx_set  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: The checkpoint of the bundled default model (committed; its digest is in the ONNX file).
DEFAULT_CHECKPOINT = ROOT / "runs" / "world" / "unet_world39f.pt"
ENGINES = ("openvino", "cv2", "tract")
VARIANT_FILES = ("m.onnx", "m.fp16.onnx", "m.int8.onnx", "m.fixed-1x1x28x28.onnx")


def _require_engines() -> None:
    missing = [m for m in ENGINES if importlib.util.find_spec(m) is None]
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must check every runtime; not installed: {missing}")
    if missing:
        pytest.skip(f"not installed: {missing} (pip install 'denoise-batch[edge]')")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_idx_set(tmp_path_factory.mktemp("rt-mnist"), n_train=300, n_test=96)


@pytest.fixture(scope="module")
def conv_ckpt(tmp_path_factory, data_dir):
    images = load_split("train", data_dir, download=False)[0]
    out = tmp_path_factory.mktemp("rt-conv") / "conv.pt"
    config = TrainConfig(arch="conv_denoiser", epochs=2, batch_size=16, lr=5e-3, val_size=50)
    fit(config, images, out, log=lambda m: None, progress=False)
    return out


def _export_all(ckpt, folder, data_dir, *extra):
    report = folder / "report.json"
    args = [ckpt, "-o", folder / "m.onnx", "--all", "--data-dir", data_dir, "--report", report]
    args += ["--calibration-images", "64", *extra]
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result, json.loads(report.read_text())["runtimes"]


def _verdicts(rows):
    return {(r["runtime"], r["file"]): r["verdict"] for r in rows}


def _assert_four_runtimes_each(rows):
    """Every model file runs right in onnxruntime, OpenVINO, tract and onnx.reference at least
    (OpenCV too, on most), and the .ort file in onnxruntime."""
    verdicts = _verdicts(rows)
    for file in VARIANT_FILES:
        for engine in ("onnxruntime", "openvino", "tract", "onnx.reference"):
            row = next(r for r in rows if (r["runtime"], r["file"]) == (engine, file))
            assert row["verdict"] == "ok", row
            assert row["batch_1"] and row["psnr"] is not None
            if "fixed" not in file:
                assert row["batch_n"] and row["other_size"], row
    assert verdicts[("onnxruntime", "m.ort")] == "ok"
    assert verdicts[("openvino", "m.ort")] == "n/a"
    if runtimes.RUNTIMES["opencv-classic"].missing() is None:  # OpenCV 4.x and 5.0
        for file in ("m.onnx", "m.int8.onnx", "m.fixed-1x1x28x28.onnx"):
            assert verdicts[("opencv-classic", file)] == "ok"
    else:  # 5.1 has only the new engine, which runs fp32 and fp16 right (INT8 wrong)
        for file in ("m.onnx", "m.fp16.onnx", "m.fixed-1x1x28x28.onnx"):
            assert verdicts[("opencv-new", file)] == "ok", file
    for row in rows:  # whatever else failed says why
        assert row["verdict"] in ("ok", "n/a", "wrong", "fails", "not checked")
        assert row["verdict"] == "ok" or row["reason"]


def test_portable_export_runs_alike_in_every_runtime(tmp_path, conv_ckpt, data_dir):
    _require_engines()
    result, rows = _export_all(conv_ckpt, tmp_path, data_dir)
    assert "| runtime | file | verdict |" in result.stdout
    _assert_four_runtimes_each(rows)
    for name in VARIANT_FILES:
        model = onnx.load(str(tmp_path / name))
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["export_profile"] == "portable" and "graph_rewrites" not in meta
        assert not model.graph.value_info  # tract refused the exporter's stale entries
        assert "ReduceSum" not in [n.op_type for n in model.graph.node]
    int8 = onnx.load(str(tmp_path / "m.int8.onnx"))
    assert {o.domain: o.version for o in int8.opset_import}[""] >= 19  # onnx.reference's QDQ


def test_the_default_model_and_its_variants_run_in_four_runtimes(tmp_path, data_dir):
    """The bundled default's own checkpoint, every variant, in every engine installed."""
    _require_engines()
    from denoise_cli.model.bundled import DEFAULT_MODEL, bundled_models

    bundled = onnx.load(str(bundled_models()[DEFAULT_MODEL]))
    digest = {p.key: p.value for p in bundled.metadata_props}["source_checkpoint_sha256"]
    wrong = f"{DEFAULT_CHECKPOINT.name} is not the default"
    assert file_sha256(DEFAULT_CHECKPOINT) == digest, wrong
    _, rows = _export_all(DEFAULT_CHECKPOINT, tmp_path, data_dir, "--test-limit", "64")
    _assert_four_runtimes_each(rows)


def test_the_onnxruntime_profile_is_what_opencv_classic_cannot_parse(tmp_path, conv_ckpt, data_dir):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "ENGINE_CLASSIC"):
        pytest.skip(
            "only OpenCV 5.0's classic engine refuses the rewrite (4.x parses it, 5.1 has none)"
        )
    args = ["--profile", "onnxruntime", "--runtimes", "onnxruntime,opencv-classic"]
    result = CliRunner().invoke(
        app,
        [str(a) for a in (conv_ckpt, "-o", tmp_path / "m.onnx", "--data-dir", data_dir, *args)],
    )
    assert result.exit_code == 0, result.output  # the file is right; OpenCV is the one failing
    row = next(line for line in result.stdout.splitlines() if "| opencv-classic | m.onnx |" in line)
    assert "| fails |" in row and "ReduceSum" in row
    assert "warning: opencv-classic runs m.onnx fails" in result.output


def _fake(name, load):
    return runtimes.Runtime(name, "fake-package", "numpy", load)


def test_wrong_failing_and_missing_runtimes_are_reported_never_passed(
    tmp_path, conv_ckpt, data_dir, monkeypatch
):
    out = tmp_path / "m.onnx"
    export = [str(a) for a in (conv_ckpt, "-o", out, "--data-dir", data_dir, "--runtimes", "none")]
    assert CliRunner().invoke(app, export).exit_code == 0

    def identity(path):  # "runs" the file and returns its input: a silently wrong engine
        return lambda x: x

    def broken(path):
        raise RuntimeError("unsupported operator\nConv with group=3")

    fakes = {
        "identity": _fake("identity", identity),
        "broken": _fake("broken", broken),
        "absent": runtimes.Runtime("absent", "absent-engine", "no_such_module_xyz", identity),
    }
    monkeypatch.setattr(runtimes, "RUNTIMES", {**runtimes.RUNTIMES, **fakes})
    report = tmp_path / "rt.json"
    args = ["runtimes", str(out), "--data-dir", str(data_dir), "--report", str(report)]
    result = CliRunner().invoke(app, [*args, "--runtime", "onnxruntime,identity,broken,absent"])
    assert result.exit_code == 1, result.output
    rows = {r["runtime"]: r for r in json.loads(report.read_text())}
    assert rows["onnxruntime"]["verdict"] == "ok"
    assert (
        rows["identity"]["verdict"] == "wrong"
        and "vs onnxruntime fp32" in rows["identity"]["reason"]
    )
    assert rows["broken"]["verdict"] == "fails"
    assert (
        rows["broken"]["reason"]
        == "does not load: RuntimeError: unsupported operator Conv with group=3"
    )
    assert rows["absent"]["verdict"] == "not checked"
    assert rows["absent"]["reason"] == "not installed (pip install absent-engine)"
    assert "error: identity runs m.onnx wrong" in result.output
    assert "error: broken runs m.onnx fails" in result.output
    assert "absent runs" not in result.output

    only_good = CliRunner().invoke(app, [*args, "--runtime", "onnxruntime,absent"])
    assert only_good.exit_code == 0, only_good.output  # not installed is listed, not a failure
    unknown = CliRunner().invoke(app, [*args, "--runtime", "onnxruntime,nope"])
    assert unknown.exit_code == 2 and "unknown runtime(s) nope" in unknown.output


def test_a_small_shift_on_a_fp32_file_is_wrong(tmp_path, conv_ckpt, data_dir, monkeypatch):
    """A runtime moving outputs by 0.01 on a fp32 file (OpenVINO's bf16 default did 0.14)
    is wrong even where the mean PSNR barely moves."""
    out = tmp_path / "m.onnx"
    export = [str(a) for a in (conv_ckpt, "-o", out, "--data-dir", data_dir, "--runtimes", "none")]
    assert CliRunner().invoke(app, export).exit_code == 0
    session = runtimes._load_onnxruntime(out)

    def nudged(path):
        return lambda x: np.clip(session(x) + np.float32(0.01) * (x > 0.5), 0, 1)

    monkeypatch.setattr(runtimes, "RUNTIMES", {"nudged": _fake("nudged", nudged)})
    result = CliRunner().invoke(
        app, ["runtimes", str(out), "--data-dir", str(data_dir), "--runtime", "nudged"]
    )
    assert (
        result.exit_code == 1
        and "max abs 0.01 vs onnxruntime fp32 (allowed 0.0001)" in result.output
    )


def test_tflite_is_listed_with_how_to_install_it(monkeypatch, tmp_path, data_dir):
    monkeypatch.setenv(runtimes.TFLITE_PYTHON_ENV, str(tmp_path / "no-such-python"))
    reason = runtimes.RUNTIMES["tflite"].missing()
    assert reason is not None and "pip install onnx2tf" in reason
    if importlib.util.find_spec("onnx2tf") is None:  # the command: a missing package, exit 2
        models = Path(__file__).resolve().parents[1] / "denoise_cli" / "models"
        out = tmp_path / "m.tflite"
        args = ["tflite", str(models / "unet_world.onnx"), "-o", str(out), "--images", "8"]
        result = CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)])
        assert result.exit_code == 2 and "pip install onnx2tf" in result.output
        assert not out.exists()


@pytest.mark.slow
def test_tflite_runs_onnx2tfs_conversion_and_reports_int8_as_wrong(tmp_path, data_dir):
    """Where onnx2tf and ai-edge-litert are installed (here or in DENOISE_TFLITE_PYTHON): the
    default model converts and matches; onnx2tf's conversion of its QDQ INT8 file returns
    ~1.0 everywhere, and that must read as wrong, never as passing."""
    if runtimes.RUNTIMES["tflite"].missing():
        pytest.skip("onnx2tf / ai-edge-litert are not installed here")
    models = Path(__file__).resolve().parents[1] / "denoise_cli" / "models"
    files = [models / "unet_scenes.onnx", models / "unet_scenes.int8.onnx"]
    args = ["runtimes", *map(str, files), "--runtime", "tflite", "--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert re.search(r"\| tflite \| unet_scenes\.onnx \| ok \| yes \| yes \| yes \|", result.output)
    assert re.search(r"\| tflite \| unet_scenes\.int8\.onnx \| wrong \|", result.output)


def _identity(path: Path, dims: list) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["noisy"], ["denoised"])],
        "g",
        [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, dims)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("fixed", "fixed height and width; convert the dynamic .onnx file"),
        ("int8", "variant int8-qdq-per-channel; convert the fp32 file"),
    ],
)
def test_tflite_conversion_refuses_files_onnx2tf_gets_wrong(tmp_path, data_dir, case, message):
    models = Path(__file__).resolve().parents[1] / "denoise_cli" / "models"
    source = (
        _identity(tmp_path / "fixed.onnx", [1, 1, 28, 28])
        if case == "fixed"
        else models / "unet_scenes.int8.onnx"
    )
    out = tmp_path / "out" / "m.tflite"
    args = ["tflite", str(source), "-o", str(out), "--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_tflite_conversion_writes_a_verified_file_and_its_facts(tmp_path, data_dir):
    if runtimes.RUNTIMES["tflite"].missing():
        pytest.skip("onnx2tf / ai-edge-litert are not installed here")
    source = Path(__file__).resolve().parents[1] / "denoise_cli" / "models" / "unet_scenes.onnx"
    out = tmp_path / "m.tflite"
    args = ["tflite", str(source), "-o", str(out), "--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert re.search(r"\| tflite \| m\.tflite \| ok \|", result.output)
    facts = json.loads((tmp_path / "m.tflite.json").read_text())
    assert facts["input"]["layout"] == facts["output"]["layout"] == "NHWC"
    assert facts["metadata"]["polarity"] == "light-on-dark"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "m.tflite.json"]


NODE_BUILDS = [
    ("onnxruntime-web", runtimes.ORT_WEB_ENV, "npm install onnxruntime-web"),
    ("onnxruntime-node", runtimes.ORT_NODE_ENV, "npm install --ignore-scripts onnxruntime-node"),
]


@pytest.mark.parametrize(("name", "env", "install"), NODE_BUILDS)
def test_onnxruntimes_javascript_builds_are_listed_with_how_to_install_them(
    monkeypatch, name, env, install
):
    monkeypatch.delenv(env, raising=False)
    reason = runtimes.RUNTIMES[name].missing()
    assert reason is not None and install in reason


@pytest.mark.parametrize(("name", "env", "install"), NODE_BUILDS)
def test_onnxruntimes_javascript_builds_run_the_onnx_and_ort_files(
    tmp_path, conv_ckpt, data_dir, name, env, install
):
    """Where the npm package was installed and its environment variable names the folder."""
    if runtimes.RUNTIMES[name].missing():
        pytest.skip(f"{name} (npm) is not set up here")
    out = tmp_path / "m.onnx"
    args = [conv_ckpt, "-o", out, "--ort", "--data-dir", data_dir, "--report", tmp_path / "r.json"]
    args += ["--runtimes", f"onnxruntime,{name}"]
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    verdicts = _verdicts(json.loads((tmp_path / "r.json").read_text())["runtimes"])
    assert verdicts[(name, "m.onnx")] == "ok"
    assert verdicts[(name, "m.ort")] == "ok"


@pytest.mark.parametrize(
    ("version", "flags", "classic", "new"),
    [
        ("4.12.0", (), None, "not checked"),  # one engine, no flags: the classic one
        ("5.0.0", ("ENGINE_AUTO", "ENGINE_CLASSIC", "ENGINE_NEW"), "ENGINE_CLASSIC", "ENGINE_NEW"),
        ("5.1.0", ("ENGINE_AUTO", "ENGINE_OPENCV", "ENGINE_ORT"), "not checked", "ENGINE_OPENCV"),
    ],
)
def test_each_opencv_engine_is_the_one_named(monkeypatch, tmp_path, version, flags, classic, new):
    """The engine flags of OpenCV 4.x, 5.0 and 5.1 (which dropped the classic engine and renamed
    the new one): each check loads with its own engine or says why not, never the other one."""
    read = []
    dnn = types.SimpleNamespace(**{f: f for f in flags})
    dnn.readNetFromONNX = lambda path, engine=None: read.append(engine) or object()
    cv2 = types.SimpleNamespace(__version__=version, dnn=dnn)
    monkeypatch.setattr(runtimes, "_cv2", lambda: cv2)
    for name, want in (("opencv-classic", classic), ("opencv-new", new)):
        runtime = runtimes.RUNTIMES[name]
        read.clear()
        if want == "not checked":
            reason = runtime.unusable()
            assert "4.x has one engine" in reason or f"{version} has no classic" in reason
            with pytest.raises(RuntimeError, match="engine"):
                runtime.load(tmp_path / "m.onnx")
            assert read == []
        else:
            assert runtime.unusable() is None
            runtime.load(tmp_path / "m.onnx")
            assert read == [want]


def test_runtimes_takes_the_option_spelled_as_export_spells_it(data_dir):
    """`export --runtimes` but `runtimes --runtime`: both spellings work in both places."""
    models = Path(__file__).resolve().parents[1] / "denoise_cli" / "models"
    args = ["runtimes", str(models / "unet_world.onnx"), "--images", "8"]
    for spelling in ("--runtime", "--runtimes"):
        result = CliRunner().invoke(
            app, [*args, spelling, "onnxruntime", "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 0, result.output
        assert "| onnxruntime | unet_world.onnx | ok |" in result.output
