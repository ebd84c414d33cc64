"""TensorFlow Lite files converted from our ONNX files with onnx2tf, verified before they land.

onnx2tf rewrites its input file in place, turns a fixed-shape model into NHWC input with NCHW
output, folds the QDQ INT8 file into a model that answers ~1.0 everywhere, and keeps none of
the ONNX metadata. So the conversion runs on a copy, in the Python that has TensorFlow
(runtimes.tflite_python), only from a float file with dynamic height and width; a result
whose input and output layouts differ is refused; the model's facts travel in a sidecar
`<file>.json`; and the file is published only once LiteRT ran it and matched onnxruntime
running the source (runtimes.check_runtimes, fp32 tolerances).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.errors import MissingDependency
from denoise_export import runtimes
from denoise_export.build import staging_folder
from denoise_export.onnx_export import ExportError
from denoise_train.checkpoint import file_sha256

FORMAT = "denoise-batch-tflite/1"


def convert(
    source: Path,
    destination: Path,
    clean: np.ndarray,
    noisy: np.ndarray,
    log: Callable[[str], Any] = lambda msg: None,
) -> list[runtimes.RuntimeRow]:
    """Write `destination` (.tflite) and `destination`.json from the ONNX file `source`;
    returns LiteRT's check against onnxruntime on `noisy` (N, 1, 28, 28). Raises
    ExportError, with nothing written, when onnx2tf is missing, the source does not suit,
    the conversion fails or its result is wrong."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if all(d.HasField("dim_value") for d in dims[2:]):
        raise ExportError(
            f"{source}: fixed height and width; convert the dynamic .onnx file (LiteRT resizes "
            "its input at run time, and onnx2tf gives a fixed file NHWC input but NCHW output)"
        )
    if meta.get("variant", "fp32") != "fp32":
        raise ExportError(
            f"{source}: variant {meta['variant']}; convert the fp32 file (onnx2tf's conversion "
            "of the QDQ INT8 file returns ~1.0 everywhere)"
        )
    python = runtimes.tflite_python()
    if python is None:
        raise MissingDependency(runtimes.RUNTIMES["tflite"].missing() or "onnx2tf is not installed")
    with staging_folder(destination.parent, destination.name) as staging:
        staged = staging / destination.name
        facts = _run_converter(python, source, staged)
        if facts["input"]["layout"] != facts["output"]["layout"]:
            raise ExportError(
                f"onnx2tf gave {facts['input']['layout']} input and "
                f"{facts['output']['layout']} output; refusing a file whose layouts differ"
            )
        sidecar = {
            "format": FORMAT,
            "source": source.name,
            "source_sha256": file_sha256(source),
            "converter": f"onnx2tf {_version(python, 'onnx2tf')}",
            **facts,
            "value_range": meta.get("value_range", "0..1"),
            "metadata": meta,
        }
        (staging / f"{destination.name}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
        log(f"converted {source.name} with {sidecar['converter']}; checking it in LiteRT")
        base = runtimes.baseline(source, clean, noisy)
        rows = runtimes.check_runtimes([staged], base, ["tflite"])
        if rows[0].verdict != "ok":
            raise ExportError(
                f"{destination.name}: LiteRT runs it {rows[0].verdict}: {rows[0].reason}"
            )
        for name in (destination.name, f"{destination.name}.json"):
            os.replace(staging / name, destination.parent / name)
    return rows


def _run_converter(python: str, source: Path, staged: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="denoise-tflite-") as work:
        log = Path(work) / "converter.log"
        with open(log, "w") as err:
            done = subprocess.run(
                [python, "-c", runtimes.TFLITE_WORKER, str(source), work, str(staged)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=1800,
            )
        saved = [ln for ln in done.stdout.splitlines() if ln.startswith("@@ saved ")]
        if done.returncode != 0 or not saved:
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            raise ExportError(
                f"onnx2tf conversion failed: {lines[-1] if lines else f'exit {done.returncode}'}"
            )
    return json.loads(saved[-1].removeprefix("@@ saved "))


def _version(python: str, package: str) -> str:
    done = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() or "unknown"
