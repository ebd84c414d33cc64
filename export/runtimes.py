"""The exported files in the runtimes edge users deploy with, each against onnxruntime's fp32.

onnxruntime verifying its own files proves little about OpenVINO, OpenCV or tract: measured
here, tract refused every U-Net over the exporter's stale `value_info`, OpenCV's classic engine
could not parse the `ReduceSum` of the onnxruntime rewrite nor run fp16 weights, OpenCV 5's
new engine ran the INT8 file 10 dB wrong without an error, OpenVINO's CPU default (bf16) moved
outputs by up to 0.14, and onnx.reference has no `DequantizeLinear` below opset 19. So each
file is run in every runtime installed here, on the same noisy test digits, at batch 1, at a
batch of many, and at a size other than 28x28, and scored against onnxruntime running the fp32
file. A runtime that is not installed is listed as not checked; one that runs a file wrongly
is reported as wrong, never as passing.

Each runtime is a `Runtime`: how to find it, how to load a file into a callable
(N, 1, H, W) float32 -> (N, 1, H, W) float32, and which file formats it reads.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.metrics import psnr
from denoise_cli.core.timing import best_rate
from denoise_export.onnx_export import INPUT_NAME, odd_size_digits, ort_session

Model = Callable[[np.ndarray], np.ndarray]

#: PSNR a file may lose against onnxruntime's fp32 outputs, by the file's `variant` tag prefix
#: (INT8: the drop the export itself allows).
PSNR_TOLERANCE = {"int8": 0.5}
DEFAULT_PSNR_TOLERANCE = 0.05  # dB
#: Max abs difference allowed on top, for the files that should compute what fp32 computes.
MAX_ABS_TOLERANCE = {
    "fp32": 1e-4,
    "ort-format": 1e-4,
    "tflite-fp32": 1e-4,
    "fixed": 1e-4,
    # tract computes an fp16 file in half precision end to end (onnxruntime's CPU provider
    # upcasts): unet_world's fp16 file reached 8.5e-3 on test digits there, above 1e-2 on the
    # 64x48 input; 2e-2 is 5 grey levels at 8 bits, and the PSNR check still holds the mean.
    "fp16": 2e-2,
}
#: Images of the batch-of-many case (and of the PSNR); onnx.reference, pure numpy, gets fewer.
BATCH = 64
REFERENCE_BATCH = 8


@dataclass(frozen=True)
class Runtime:
    """One inference engine: its name, the package that brings it, how it loads a file."""

    name: str
    package: str  # what `pip install` needs (shown when it is missing)
    module: str  # importable when installed ("" for an engine outside Python)
    load: Callable[[Path], Model]
    formats: tuple[str, ...] = (".onnx",)
    batch: int = BATCH
    timed: bool = True  # False: its images/s would measure process start-ups, not the engine

    #: Why it cannot be checked although its module imports (None: it can).
    unusable: Callable[[], str | None] = lambda: None

    def missing(self) -> str | None:
        """Why this runtime cannot be checked here, or None when it can."""
        if self.module and importlib.util.find_spec(self.module) is None:
            return f"not installed (pip install {shlex.quote(self.package)})"
        return self.unusable()


def _cv2() -> Any:
    import cv2

    return cv2


def _load_onnxruntime(path: Path) -> Model:
    session = ort_session(path)
    return lambda x: session.run(None, {INPUT_NAME: x})[0]


def _load_openvino(path: Path) -> Model:
    import openvino as ov

    # Its CPU plugin's default precision on CPUs with bf16 is bf16: outputs moved by up to
    # 0.14. Pinned to f32, it computes what the export verified.
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: np.asarray(compiled(x)[0])


def _opencv_engine(kind: str) -> Any | None:
    """The readNetFromONNX engine flag for "classic" or "new" in the OpenCV installed; None where
    that OpenCV has no such engine. 4.x: one engine (the classic one, no flag); 5.0: both
    (ENGINE_CLASSIC, ENGINE_NEW); 5.1 dropped the classic one and calls the new one ENGINE_OPENCV.
    """
    dnn = _cv2().dnn
    names = ("ENGINE_CLASSIC",) if kind == "classic" else ("ENGINE_NEW", "ENGINE_OPENCV")
    for name in names:
        if hasattr(dnn, name):
            return getattr(dnn, name)
    return None


def _opencv_has_flags() -> bool:
    return hasattr(_cv2().dnn, "ENGINE_AUTO")


def _opencv_unusable(kind: str) -> str | None:
    if kind == "classic" and _opencv_has_flags() and _opencv_engine("classic") is None:
        return (
            f"OpenCV {_cv2().__version__} has no classic engine (checked as opencv-new; "
            "5.0 has both)"
        )
    if kind == "new" and _opencv_engine("new") is None:
        return "OpenCV 4.x has one engine (checked as opencv-classic)"
    return None


def _opencv_loader(kind: str) -> Callable[[Path], Model]:
    def load(path: Path) -> Model:
        if reason := _opencv_unusable(kind):  # never the other engine under this one's name
            raise RuntimeError(reason)
        engine = _opencv_engine(kind)
        if engine is None:  # OpenCV 4.x: one engine, the classic one, and no flag to pick it
            net = _cv2().dnn.readNetFromONNX(str(path))
        else:
            net = _cv2().dnn.readNetFromONNX(str(path), engine=engine)

        def run(x: np.ndarray) -> np.ndarray:
            net.setInput(x)
            return np.asarray(net.forward())

        return run

    return load


def _load_tract(path: Path) -> Model:
    import tract

    model = tract.onnx().load(str(path)).into_model().into_runnable()
    return lambda x: model.run([x])[0].to_numpy()


#: Where `npm install onnxruntime-web` / `npm install --ignore-scripts onnxruntime-node` was
#: run (the folder holding node_modules/). onnxruntime-node's install script only fetches CUDA
#: libraries (from api.nuget.org); its CPU binaries come in the npm package itself.
ORT_WEB_ENV = "DENOISE_ORT_WEB_DIR"
ORT_NODE_ENV = "DENOISE_ORT_NODE_DIR"
_NODE_RUNNER = """
const ort = require(process.env.ORT_PACKAGE);
const fs = require('fs');
const [model, input, output, n, h, w] = process.argv.slice(2);
if (ort.env.wasm) ort.env.wasm.numThreads = 1;
(async () => {
  const session = await ort.InferenceSession.create(fs.readFileSync(model));
  const buf = fs.readFileSync(input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const x = new ort.Tensor('float32', data, [Number(n), 1, Number(h), Number(w)]);
  const y = (await session.run({ noisy: x }))[session.outputNames[0]].data;
  fs.writeFileSync(output, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def _npm_package(env: str, name: str) -> Path | None:
    folder = os.environ.get(env)
    package = Path(folder) / "node_modules" / name if folder else None
    return package if package is not None and package.is_dir() else None


def _node_unusable(env: str, name: str, install: str) -> Callable[[], str | None]:
    def unusable() -> str | None:
        if shutil.which("node") is None:
            return "not installed (no `node` on PATH)"
        if _npm_package(env, name) is None:
            return f"not installed ({install}, then set {env} to that folder)"
        return None

    return unusable


def _node_loader(env: str, name: str) -> Callable[[Path], Model]:
    """onnxruntime's JavaScript builds, in Node: each call is one `node` process (files in,
    files out), so they are checked for their numbers, not timed."""

    def load(path: Path) -> Model:
        package = _npm_package(env, name)

        def run(x: np.ndarray) -> np.ndarray:
            with tempfile.TemporaryDirectory(prefix="denoise-node-") as tmp:
                script, src, dst = (Path(tmp) / n for n in ("run.cjs", "x.bin", "y.bin"))
                script.write_text(_NODE_RUNNER)
                np.ascontiguousarray(x, dtype=np.float32).tofile(src)
                shape = [str(v) for v in x.shape[:1] + x.shape[2:]]
                done = subprocess.run(
                    ["node", str(script), str(path), str(src), str(dst), *shape],
                    env={**os.environ, "ORT_PACKAGE": str(package)},
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                if done.returncode != 0:
                    raise RuntimeError(done.stderr.strip() or f"node exited {done.returncode}")
                return np.fromfile(dst, dtype=np.float32).reshape(x.shape)

        run(np.zeros((1, 1, 28, 28), np.float32))  # a file it cannot load fails here, as a load
        return run

    return load


#: A Python with onnx2tf and ai-edge-litert (TensorFlow pins its own numpy and onnx, so it
#: usually lives in a virtualenv of its own); unset: this interpreter, if it has them.
TFLITE_PYTHON_ENV = "DENOISE_TFLITE_PYTHON"
#: Runs in that Python: converts a copy of the file with onnx2tf (which rewrites its input in
#: place), loads the float32 .tflite in LiteRT, then answers "IN.npy OUT.npy" lines. The
#: converted model is NHWC; its output may come back NCHW (fixed shapes): both are handled.
TFLITE_WORKER = """
import json, os, shutil, sys, numpy as np
src, work = sys.argv[1], sys.argv[2]
if src.endswith(".tflite"):
    tflite = src
else:
    copy = os.path.join(work, "model.onnx")
    shutil.copyfile(src, copy)
    import onnx2tf
    onnx2tf.convert(input_onnx_file_path=copy, output_folder_path=os.path.join(work, "tf"),
                    non_verbose=True, copy_onnx_input_output_names_to_tflite=True)
    tflite = os.path.join(work, "tf", "model_float32.tflite")
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=tflite, num_threads=2)
inp, out = it.get_input_details()[0], it.get_output_details()[0]
nhwc = int(inp["shape_signature"][-1]) == 1
shape = None

def run(x):
    global shape
    feed = x.transpose(0, 2, 3, 1) if nhwc else x
    if shape != feed.shape:
        it.resize_tensor_input(inp["index"], list(feed.shape))
        it.allocate_tensors()
        shape = feed.shape
    it.set_tensor(inp["index"], np.ascontiguousarray(feed))
    it.invoke()
    return it.get_tensor(out["index"])

if len(sys.argv) > 3:  # save: the file, and what its input and output look like
    dims = [int(v) for v in inp["shape_signature"]]
    probe = np.zeros([max(dims[0], 1)] + [v if v > 0 else 28 for v in dims[1:]], np.float32)
    probe = probe.transpose(0, 3, 1, 2) if nhwc else probe
    y = run(probe)
    facts = {"input": {"name": inp["name"], "shape": [int(v) for v in inp["shape_signature"]],
                       "layout": "NHWC" if nhwc else "NCHW"},
             "output": {"name": out["name"], "shape": [int(v) for v in out["shape_signature"]],
                        "layout": "NHWC" if y.shape[-1] == 1 and y.ndim == 4 else "NCHW"}}
    shutil.copyfile(tflite, sys.argv[3])
    print("@@ saved", json.dumps(facts), flush=True)
    sys.exit(0)
print("@@ ready", flush=True)
for line in sys.stdin:
    a, b = line.split()
    try:
        x = np.load(a)
        y = run(x)
        if y.shape != x.shape and y.ndim == 4 and y.shape[-1] == x.shape[1]:
            y = y.transpose(0, 3, 1, 2)  # NHWC back to the caller's NCHW
        np.save(b, y)
        print("@@ ok", flush=True)
    except Exception as exc:
        print("@@ error", " ".join(str(exc).split())[:300], flush=True)
"""


def tflite_python() -> str | None:
    """The Python that runs onnx2tf and LiteRT here, or None."""
    configured = os.environ.get(TFLITE_PYTHON_ENV)
    if configured:
        return configured if Path(configured).is_file() else None
    here = all(importlib.util.find_spec(m) for m in ("onnx2tf", "ai_edge_litert"))
    return sys.executable if here else None


def _tflite_unusable() -> str | None:
    if tflite_python() is None:
        return (
            "not installed (pip install onnx2tf tensorflow ai-edge-litert, in this Python or "
            f"in a virtualenv named by {TFLITE_PYTHON_ENV})"
        )
    return None


def _load_tflite(path: Path) -> Model:
    """TensorFlow Lite (LiteRT) running a .tflite file, or onnx2tf's conversion of a .onnx
    one: one worker process per file (conversion, then one interpreter), fed through .npy
    files."""
    work = tempfile.mkdtemp(prefix="denoise-tflite-")
    log = Path(work) / "worker.log"  # TensorFlow talks a lot: a file, not a pipe to fill
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [tflite_python(), "-c", TFLITE_WORKER, str(path), work],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )

    def answer() -> str:
        """The worker's next protocol line (anything else on its stdout is chatter)."""
        while line := proc.stdout.readline():
            if line.startswith("@@ "):
                return line[3:].strip()
        return ""

    if not answer().startswith("ready"):
        _stop_worker(proc, "")
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError(f"onnx2tf conversion failed: {lines[-1] if lines else 'no output'}")

    def run(x: np.ndarray) -> np.ndarray:
        src, dst = os.path.join(work, "x.npy"), os.path.join(work, "y.npy")
        np.save(src, np.ascontiguousarray(x, dtype=np.float32))
        proc.stdin.write(f"{src} {dst}\n")
        proc.stdin.flush()
        reply = answer()
        if reply != "ok":
            raise RuntimeError(reply.removeprefix("error ") or "the LiteRT worker died")
        return np.load(dst)

    weakref.finalize(run, _stop_worker, proc, work)  # the worker lives as long as the model
    return run


def _stop_worker(proc: subprocess.Popen, work: str) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(work, ignore_errors=True)


def _load_reference(path: Path) -> Model:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))

    def run(x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # its Sigmoid is 1 / (1 + exp(-x)), exactly 0 or 1
            return evaluator.run(None, {INPUT_NAME: x})[0]

    return run


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("onnxruntime", "onnxruntime", "onnxruntime", _load_onnxruntime, (".onnx", ".ort")),
        Runtime("openvino", "openvino", "openvino", _load_openvino),
        Runtime(
            "opencv-classic",
            "opencv-python-headless<5.1",
            "cv2",
            _opencv_loader("classic"),
            unusable=lambda: _opencv_unusable("classic"),
        ),
        Runtime(
            "opencv-new",
            "opencv-python-headless>=5",
            "cv2",
            _opencv_loader("new"),
            unusable=lambda: _opencv_unusable("new"),
        ),
        Runtime("tract", "tract", "tract", _load_tract),
        Runtime("onnx.reference", "onnx", "onnx", _load_reference, batch=REFERENCE_BATCH),
        Runtime(
            "onnxruntime-web",
            "node and onnxruntime-web from npm",
            "",  # no Python module: found through node and ORT_WEB_ENV
            _node_loader(ORT_WEB_ENV, "onnxruntime-web"),
            (".onnx", ".ort"),
            unusable=_node_unusable(ORT_WEB_ENV, "onnxruntime-web", "npm install onnxruntime-web"),
            timed=False,
        ),
        Runtime(
            "onnxruntime-node",
            "node and onnxruntime-node from npm",
            "",  # found through node and ORT_NODE_ENV
            _node_loader(ORT_NODE_ENV, "onnxruntime-node"),
            (".onnx", ".ort"),
            unusable=_node_unusable(
                ORT_NODE_ENV, "onnxruntime-node", "npm install --ignore-scripts onnxruntime-node"
            ),
            timed=False,
        ),
        Runtime(
            "tflite",
            "onnx2tf, tensorflow and ai-edge-litert",
            "",  # found through TFLITE_PYTHON_ENV or this interpreter
            _load_tflite,
            (".onnx", ".tflite"),
            unusable=_tflite_unusable,
        ),
    )
}


@dataclass
class RuntimeRow:
    """One file in one runtime. `verdict`: ok, wrong, fails, not checked or n/a."""

    runtime: str
    file: str
    variant: str
    verdict: str
    reason: str = ""
    batch_1: bool | None = None
    batch_n: bool | None = None
    other_size: bool | None = None
    max_abs_vs_fp32: float | None = None
    psnr: float | None = None  # on `digits` test digits: compare with psnr_vs_fp32, not across rows
    psnr_vs_fp32: float | None = None
    images_per_s: float | None = None
    digits: int | None = None  # the noisy test digits this row's figures come from


@dataclass(frozen=True)
class Baseline:
    """onnxruntime's fp32 outputs on the noisy test digits and on one odd-sized image."""

    clean: np.ndarray  # (N, 1, 28, 28)
    inputs: np.ndarray  # the noisy digits fed to every runtime
    outputs: np.ndarray  # onnxruntime fp32 on `inputs`
    odd_input: np.ndarray | None  # (1, 1, 64, 48); None for a model of one size (dense)
    odd_output: np.ndarray | None


def baseline(fp32_file: Path, clean: np.ndarray, inputs: np.ndarray) -> Baseline:
    """onnxruntime running the fp32 file: what every other file and runtime is scored against."""
    session = ort_session(fp32_file)
    outputs = session.run(None, {INPUT_NAME: inputs})[0]
    height, width = session.get_inputs()[0].shape[2:]
    if isinstance(height, int) and isinstance(width, int):
        return Baseline(clean, inputs, outputs, None, None)
    odd = odd_size_digits(inputs)
    return Baseline(clean, inputs, outputs, odd, session.run(None, {INPUT_NAME: odd})[0])


def check_runtimes(
    files: Sequence[Path],
    base: Baseline,
    names: Sequence[str] | None = None,
    seconds: float = 0.3,
) -> list[RuntimeRow]:
    """Every file in every runtime (`names`: a subset of RUNTIMES, None for all)."""
    facts = {path: _file_facts(path) for path in files}  # each file parsed once, not per engine
    rows = []
    for name in list(RUNTIMES) if names is None else names:
        runtime = RUNTIMES[name]
        missing = runtime.missing()
        for path in files:
            variant, fixed = facts[path]
            if missing:
                rows.append(RuntimeRow(name, path.name, variant, "not checked", missing))
            elif not any(path.name.endswith(s) for s in runtime.formats):
                rows.append(RuntimeRow(name, path.name, variant, "n/a", "reads no such file"))
            else:
                rows.append(_check_one(runtime, path, variant, fixed, base, seconds))
    return rows


def _file_facts(path: Path) -> tuple[str, tuple[int, ...] | None]:
    """The file's `variant` tag, and its input shape when every dimension is fixed."""
    if path.suffix == ".ort":
        return "ort-format", None
    if path.suffix == ".tflite":
        return "tflite-fp32", None  # held to fp32's tolerances
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    variant = next((p.value for p in model.metadata_props if p.key == "variant"), "fp32")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return variant, (shape if all(v is not None for v in shape) else None)


def _check_one(
    runtime: Runtime,
    path: Path,
    variant: str,
    fixed: tuple[int, ...] | None,
    base: Baseline,
    seconds: float,
) -> RuntimeRow:
    row = RuntimeRow(runtime.name, path.name, variant, "fails")
    try:
        model = runtime.load(path)
    except Exception as exc:  # every engine raises its own types
        row.reason = f"does not load: {_one_line(exc)}"
        return row
    batch = fixed[0] if fixed else runtime.batch
    count = max(batch, min(len(base.inputs), runtime.batch) // batch * batch)
    inputs = base.inputs[:count]
    try:
        start = time.perf_counter()
        outputs = np.concatenate(
            [_run(model, inputs[i : i + batch]) for i in range(0, count, batch)]
        )
        elapsed = time.perf_counter() - start
        row.batch_1 = batch == 1 or (None if fixed else _runs(model, inputs[:1]))
        row.batch_n = None if batch == 1 else True
    except Exception as exc:
        row.reason = f"does not run: {_one_line(exc)}"
        return row
    if fixed is None and base.odd_input is not None:
        try:
            odd = _run(model, base.odd_input)
            row.other_size = bool(np.max(np.abs(odd - base.odd_output)) <= _max_abs(variant, 1.0))
        except Exception as exc:
            row.other_size = False
            row.reason = f"64x48 input: {_one_line(exc)}"
    reference = base.outputs[:count]
    if outputs.shape != reference.shape:
        row.verdict, row.reason = "wrong", f"output shape {outputs.shape}"
        return row
    clean = base.clean[:count]
    row.digits = count
    row.max_abs_vs_fp32 = float(np.max(np.abs(outputs - reference)))
    row.psnr = float(np.mean(psnr(clean, outputs)))
    row.psnr_vs_fp32 = row.psnr - float(np.mean(psnr(clean, reference)))
    # A slow engine (tract's fp16: 8 images/s) is timed by the run above, not again.
    if not runtime.timed:
        row.images_per_s = None
    elif elapsed < seconds:
        row.images_per_s = batch * best_rate(lambda: model(inputs[:batch]), seconds)
    else:
        row.images_per_s = count / elapsed
    row.verdict, row.reason = _judge(variant, row)
    return row


def _run(model: Model, x: np.ndarray) -> np.ndarray:
    out = np.asarray(model(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)
    if out.shape != x.shape:
        raise ValueError(f"output shape {out.shape} for input {x.shape}")
    return out


def _runs(model: Model, x: np.ndarray) -> bool:
    _run(model, x)
    return True


def _tolerance(table: dict[str, float], variant: str, default: float) -> float:
    return next((v for k, v in table.items() if variant.startswith(k)), default)


def _max_abs(variant: str, default: float) -> float:
    return _tolerance(MAX_ABS_TOLERANCE, variant, default)


def _judge(variant: str, row: RuntimeRow) -> tuple[str, str]:
    allowed = _tolerance(PSNR_TOLERANCE, variant, DEFAULT_PSNR_TOLERANCE)
    if not -row.psnr_vs_fp32 <= allowed:  # also catches NaN
        return "wrong", f"PSNR {row.psnr_vs_fp32:+.2f} dB vs onnxruntime fp32 (allowed -{allowed})"
    limit = _max_abs(variant, float("inf"))
    if not row.max_abs_vs_fp32 <= limit:
        return "wrong", f"max abs {row.max_abs_vs_fp32:.2g} vs onnxruntime fp32 (allowed {limit:g})"
    if row.other_size is False:
        return "wrong", row.reason or "differs on a 64x48 input"
    return "ok", row.reason


def _one_line(exc: BaseException, limit: int = 400) -> str:
    """The error on one line; a long one keeps its start and its end: OpenCV names the node
    near the start and what it found at the end ("'input' is 7 (CV_16FC1)")."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    half = (limit - 5) // 2
    return text if len(text) <= limit else f"{text[:half]} ... {text[-half:]}"


def failures(rows: Sequence[RuntimeRow]) -> list[RuntimeRow]:
    """The rows of files that a runtime checked here and did not run right."""
    return [r for r in rows if r.verdict in ("wrong", "fails")]


def markdown_table(rows: Sequence[RuntimeRow]) -> str:
    """One row per file and engine, scored against onnxruntime running the fp32 (first) file
    on the same digits. No absolute PSNR: engines run different numbers of digits (the
    reference on all, onnx.reference on 8), so those would differ for one file; the export's
    own table gives its test PSNR."""

    def flag(value: bool | None) -> str:
        return "-" if value is None else ("yes" if value else "no")

    lines = [
        "| runtime | file | verdict | batch 1 | batch N | 64x48 | max abs vs fp32 "
        "| PSNR vs fp32 (dB) | digits | images/s | note |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        speed = f"{r.images_per_s:,.0f}" if r.images_per_s is not None else "-"
        nums = (
            f"{r.max_abs_vs_fp32:.1e} | {r.psnr_vs_fp32:+.3f} | {r.digits} | {speed}"
            if r.psnr_vs_fp32 is not None
            else "- | - | - | -"
        )
        lines.append(
            f"| {r.runtime} | {r.file} | {r.verdict} | {flag(r.batch_1)} | {flag(r.batch_n)} "
            f"| {flag(r.other_size)} | {nums} | {r.reason} |"
        )
    return "\n".join(lines) + "\n"


def as_dicts(rows: Sequence[RuntimeRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
