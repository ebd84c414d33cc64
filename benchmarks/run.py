"""denoise-batch benchmark suite: every figure beside a baseline measured in the same run.

    python -m benchmarks.run                      # everything, results in benchmarks/results/
    python -m benchmarks.run --quick              # smaller, for a smoke test
    python -m benchmarks.run --sections model,folder --files 10000 --rounds 5

Sections (model, folder, scans and gpu run once per model in --models: by default the default model,
and the seed conv_denoiser beside it):
  model    model-only images/s: onnxruntime (fp32, fp16, int8) vs the same network in torch
           eager, batch x threads
  folder   end to end on N noisy 28x28 PNGs: denoise-batch vs a naive per-file loop vs the
           one-process no-model I/O floor vs `cp -r` (and `denoise-batch ray` with --ray),
           interleaved rounds, median of ratios; then the models against the first
  scans    the same on --scans pages of --scan-side pixels (640: tiled at the default
           --tile 512), in megapixels/s
  memory   peak memory of denoise-batch at 1k vs 20k files (largest process, and whole tree),
           and for one --page-side PNG page, streamed against the whole-image path
  startup  CLI start-up: --help, info, and a one-image run, against `python -c pass`
  gpu      onnxruntime CUDA provider (IO binding) vs torch CUDA, when both see a GPU

File creation on a shared disk is noisy (the same `cp -r` varies 5x back to back here), so the
folder section compares within rounds, and runs on tmpfs (/dev/shm) as well as on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.timing import best_rate

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "denoise_cli.cli"]


# --- helpers ---------------------------------------------------------------------------------


_SIMD = (
    ("amx_tile", "AMX"),
    ("avx512_bf16", "AVX-512 + BF16"),
    ("avx512f", "AVX-512"),
    ("avx2", "AVX2"),
    ("sse4_2", "SSE4.2"),
)


def torch_twin(model_path: str | Path):
    """The registry network an exported model came from (default arguments, which every
    bundled model uses), for same-model timings; weights do not matter for speed."""
    import onnxruntime as ort

    from denoise_train.models import create_model

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return create_model(session.get_modelmeta().custom_metadata_map["architecture"]).eval()


def machine() -> dict[str, Any]:
    cpu, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    # The same CPU name hides different vector units (VMs of one family here had AVX-512 one day
    # and AVX2 only the next), and convolution speed follows them: record it.
    simd = next((name for flag, name in _SIMD if flag in flags), "unknown")
    import onnxruntime

    info = {
        "cpu": cpu,
        "simd": simd,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
    return info


def rate(fn, images_per_call: int, seconds: float, windows: int = 5) -> float:
    """Images/s of `fn()`: warm up, then the best of `windows` windows sharing `seconds`."""
    for _ in range(3):
        fn()
    return images_per_call * best_rate(fn, seconds, windows)


def clean_digits(n: int) -> np.ndarray:
    """The first `n` real MNIST test digits in [0, 1] (repeated past 10,000; synthetic strokes
    where the files are absent)."""
    path = Path(os.environ.get("DENOISE_MNIST_DIR", ROOT.parent / "shared/data/mnist"))
    try:
        from denoise_train.idx import read_idx

        clean = read_idx(path / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    except Exception:
        clean = np.zeros((10_000, 28, 28), np.float32)
        clean[:, 8:20, 12:16] = 1.0
    return np.resize(clean, (n, 28, 28))


def noisy_digits(n: int, seed: int = 0) -> np.ndarray:
    """Real MNIST test digits with Gaussian sigma 0.5 noise (the reference setting)."""
    from denoise_cli.core.noise import REFERENCE_KIND, REFERENCE_LEVEL, add_noise

    return add_noise(clean_digits(n), REFERENCE_KIND, REFERENCE_LEVEL, seed)


def noisy_scans(n: int, side: int, seed: int = 0) -> np.ndarray:
    """Pages of `side` x `side`: MNIST digits at 2x scattered on dark paper, Gaussian 0.3."""
    from denoise_cli.core.noise import add_noise

    digits = np.kron(clean_digits(64), np.ones((2, 2), np.float32))  # 56x56 each
    rng = np.random.default_rng(seed)
    pages = np.zeros((n, side, side), np.float32)
    for page in pages:
        for _ in range(max(1, side * side // 8000)):
            top, left = rng.integers(0, side - 56, 2)
            window = page[top : top + 56, left : left + 56]
            np.maximum(window, digits[rng.integers(len(digits))], out=window)
    return add_noise(pages, "gaussian", 0.3, seed)


def write_tree(root: Path, images: np.ndarray, per_folder: int = 1000) -> Path:
    from PIL import Image

    for i, img in enumerate(images):
        folder = root / f"{i // per_folder:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / f"{i:07d}.png")
    return root


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- sections --------------------------------------------------------------------------------


def _per_model(names: list[str], bench_one) -> tuple[str, dict]:
    """Run one section's benchmark for each model name: a '### name' table each, data by name."""
    texts, data = [], {}
    for name in names:
        text, data[name] = bench_one(name)
        texts.append(f"### {name}\n\n{text}")
    return "\n\n".join(texts), {"models": data}


def bench_model(
    quick: bool, names: list[str], openvino_python: str | None = None
) -> tuple[str, dict]:
    """Each bundled model in onnxruntime (fp32, fp16, int8) against the same network in torch;
    with `openvino_python`, also through onnxruntime's OpenVINO build (see _openvino_rates)."""
    seconds = 0.3 if quick else 1.0

    def one(name: str) -> tuple[str, Any]:
        text, data = _bench_one_model(name, seconds)
        if not openvino_python:
            return text, data
        ov_text, ov_data = _openvino_rates(openvino_python, name, seconds)
        return f"{text}\n\n{ov_text}", {"onnxruntime": data, "openvino": ov_data}

    return _per_model(names, one)


#: Run by the OpenVINO build's Python: model-only images/s of the CPU provider (fp32) and the
#: OpenVINO provider (fp32, and the verified INT8 file), interleaved, batch 256, with the
#: provider options denoise-batch uses.
_OPENVINO_SCRIPT = """
import json, sys
import numpy as np, onnxruntime as ort
from denoise_cli.core.timing import best_rate
from denoise_cli.model.placement import provider_options
from denoise_cli.model.bundled import resolve_model
fp32 = resolve_model(sys.argv[1])
files = {"fp32": fp32, "int8": fp32.with_name(fp32.stem + ".int8.onnx")}
seconds, out = float(sys.argv[2]), []
x = np.random.default_rng(0).random((256, 1, 28, 28), dtype=np.float32)
for threads in sorted({1, len(__import__("os").sched_getaffinity(0))}):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    ov = ("OpenVINOExecutionProvider", provider_options("OpenVINOExecutionProvider", threads))
    runs = {"cpu fp32": ort.InferenceSession(str(fp32), opts, providers=["CPUExecutionProvider"])}
    for kind, path in files.items():
        if path.is_file():
            runs[f"openvino {kind}"] = ort.InferenceSession(str(path), opts, providers=[ov])
    row = {"threads": threads, "batch": 256}
    for kind, sess in runs.items():
        for _ in range(3):
            sess.run(None, {"noisy": x})
        row[kind] = 256 * best_rate(lambda s=sess: s.run(None, {"noisy": x}), seconds, 5)
    out.append(row)
print(json.dumps(out))
"""


def _openvino_rates(python: str, name: str, seconds: float) -> tuple[str, list[dict]]:
    """Model-only rates through onnxruntime's OpenVINO build, which replaces onnxruntime and
    so lives in another environment: `python` must have it and this project installed."""
    proc = subprocess.run(
        [python, "-c", _OPENVINO_SCRIPT, name, str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    kinds = [k for k in data[0] if k not in ("threads", "batch")]
    rows = [
        [row["threads"], row["batch"]]
        + [f"{row[k]:,.0f}" for k in kinds]
        + [f"{max(row[k] for k in kinds if k.startswith('openvino')) / row['cpu fp32']:.2f}x"]
        for row in data
    ]
    headers = ["threads", "batch"] + [f"{k} img/s" for k in kinds] + ["best OpenVINO / CPU fp32"]
    title = f"OpenVINO build ({python}), the same process for every column:"
    return f"{title}\n\n{table(headers, rows)}", data


def _bench_one_model(name: str, seconds: float) -> tuple[str, list[dict]]:
    import onnxruntime as ort

    from denoise_cli.model.bundled import resolve_model

    batches = [1, 32, 256, 1024]
    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    models = {"fp32": str(resolve_model(name))}
    tmp = Path(tempfile.mkdtemp(prefix="denoise-bench-model-"))
    try:
        import onnx

        from denoise_export.variants import to_fp16, to_int8

        proto = onnx.load(models["fp32"])
        (tmp / "fp16.onnx").write_bytes(to_fp16(proto).SerializeToString())
        calib = noisy_digits(512, seed=1)[:, None]
        (tmp / "int8.onnx").write_bytes(to_int8(proto, calib).SerializeToString())
        models |= {"fp16": str(tmp / "fp16.onnx"), "int8": str(tmp / "int8.onnx")}
    except ImportError:
        pass
    try:
        import torch

        net = torch_twin(models["fp32"])
    except ImportError:
        torch = net = None

    rows, data = [], []
    x_all = noisy_digits(max(batches))[:, None]
    for threads in thread_counts:
        sessions = {}
        for kind, path in models.items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sessions[kind] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        for batch in batches:
            x = np.ascontiguousarray(x_all[:batch])
            result = {"threads": threads, "batch": batch}
            # Interleave: each contender measured right after the others, same conditions.
            for kind, sess in sessions.items():
                result[f"ort_{kind}"] = rate(
                    lambda s=sess, x=x: s.run(None, {"noisy": x}), batch, seconds
                )
            if torch is not None:
                torch.set_num_threads(threads)
                xt = torch.from_numpy(x)

                def run_torch(xt=xt):
                    with torch.inference_mode():
                        net(xt)

                result["torch_eager"] = rate(run_torch, batch, seconds)
            data.append(result)
            row = [threads, batch] + [f"{result[f'ort_{k}']:,.0f}" for k in models]
            if "torch_eager" in result:
                row += [
                    f"{result['torch_eager']:,.0f}",
                    f"{result['ort_fp32'] / result['torch_eager']:.2f}x",
                ]
            rows.append(row)
    shutil.rmtree(tmp, ignore_errors=True)
    headers = ["threads", "batch"] + [f"ORT {k} img/s" for k in models]
    if torch is not None:
        headers += ["torch eager img/s", "ORT fp32 / torch"]
    return table(headers, rows), data


def bench_folder(
    files: int,
    rounds: int,
    places: list[Path],
    names: list[str],
    ray_rounds: bool = False,
    openvino_python: str | None = None,
) -> tuple[str, dict]:
    """End to end on 28x28 digits, per bundled model: the naive loop runs the same model as
    denoise-batch. With several models, the last table sets each against the first."""
    images = noisy_digits(files)
    text, data = _per_model(
        names,
        lambda name: _bench_tree(images, rounds, places, name, ray_rounds, openvino_python),
    )
    return text + _models_side_by_side(data["models"]), data


def bench_scans(
    count: int,
    side: int,
    rounds: int,
    places: list[Path],
    names: list[str],
    openvino_python: str | None = None,
) -> tuple[str, dict]:
    """End to end on scan-sized pages (side x side, several digits each), in megapixels/s."""
    images = noisy_scans(count, side)
    text, data = _per_model(
        names, lambda name: _bench_tree(images, rounds, places, name, False, openvino_python)
    )
    return text + _models_side_by_side(data["models"]), data


def _models_side_by_side(models: dict[str, dict]) -> str:
    """denoise-batch's median images/s per model and place, against the first model's (the
    default): models' rounds are not interleaved, so this is a ratio of medians."""
    names = list(models)
    if len(names) < 2:
        return ""
    rows = []
    for place in models[names[0]]:
        base = statistics.median(models[names[0]][place]["seconds"]["denoise-batch"])
        for name in names:
            median = statistics.median(models[name][place]["seconds"]["denoise-batch"])
            rows.append([name, place, f"{base / median:.2f}x" if name != names[0] else "1.00x"])
    ratios = table(["model", "place", f"denoise-batch speed vs {names[0]}"], rows)
    return f"\n\n### models side by side (same files)\n\n{ratios}"


def _bench_tree(
    images: np.ndarray,
    rounds: int,
    places: list[Path],
    model: str,
    ray_rounds: bool,
    openvino_python: str | None = None,
) -> tuple[str, dict]:
    """denoise-batch against its baselines on one tree of `images`, written in each place."""
    out_md, out_data = [], {}
    for place in places:
        work = Path(tempfile.mkdtemp(prefix="denoise-bench-", dir=place))
        try:
            src = write_tree(work / "in", images)
            contenders = _contenders(src, model, openvino_python, ray_rounds)
            times = _interleaved_times(contenders, work, rounds)
            text, data = _tree_result(place, images, rounds, times)
            out_md.append(text)
            out_data[str(place)] = data
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return "\n\n".join(out_md), out_data


def _contenders(
    src: Path, model: str, openvino_python: str | None, ray_rounds: bool
) -> dict[str, Callable[[Path], list[str]]]:
    """Each contender's command line for an output folder, denoise-batch first."""
    baseline = [sys.executable, "-m", "benchmarks.baselines"]
    contenders: dict[str, Callable[[Path], list[str]]] = {
        "denoise-batch": lambda dst: [*CLI, str(src), str(dst), "--quiet", "--model", model],
        "naive loop": lambda dst: [*baseline, "naive", str(src), str(dst), "--model", model],
        "I/O floor (no model)": lambda dst: [*baseline, "floor", str(src), str(dst)],
        "cp -r": lambda dst: ["cp", "-r", str(src), str(dst)],
    }
    if openvino_python:
        # The same command in the environment of onnxruntime's OpenVINO build, where
        # --device auto and --precision auto pick its provider and the INT8 file.
        ov_cli = [openvino_python, "-m", "denoise_cli.cli"]
        contenders["denoise-batch, OpenVINO build"] = lambda dst: [
            *ov_cli, str(src), str(dst), "--quiet", "--model", model
        ]  # fmt: skip
    if ray_rounds:
        # A fresh local Ray instance per run: its start-up is part of what Ray costs.
        contenders["denoise-batch ray (2 actors, local Ray)"] = lambda dst: [
            *CLI, "ray", str(src), str(dst), "--quiet", "--workers", "2", "--model", model
        ]  # fmt: skip
    return contenders


def _interleaved_times(
    contenders: dict[str, Callable[[Path], list[str]]], work: Path, rounds: int
) -> dict[str, list[float]]:
    """Seconds of each contender per round; each round starts one contender later, so no
    contender always runs first (or always after a warm page cache)."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            dst = work / f"out-{r}-{names.index(name)}"
            subprocess.run(["sync"], check=False)
            times[name].append(timed(contenders[name](dst)))
            shutil.rmtree(dst)
    return times


def _tree_result(
    place: Path, images: np.ndarray, rounds: int, times: dict[str, list[float]]
) -> tuple[str, dict]:
    """The place's table (medians, and each contender's median per-round ratio to
    denoise-batch) and its record."""
    files = len(images)
    megapixels = images[0].size * files / 1e6
    ours = times["denoise-batch"]
    ratio = {
        name: statistics.median(t / o for t, o in zip(runs, ours, strict=True))
        for name, runs in times.items()
    }
    rows = [
        [
            name,
            f"{files / statistics.median(runs):,.0f}",
            f"{megapixels / statistics.median(runs):,.1f}",
            f"{statistics.median(runs):.2f}",
            f"{ratio[name]:.2f}x",
        ]
        for name, runs in times.items()
    ]
    header = [
        "contender",
        "images/s (median)",
        "megapixels/s (median)",
        "seconds (median)",
        "denoise-batch speed-up (median of per-round ratios)",
    ]
    label = f"{place} ({_fs_type(place)})"
    text = (
        f"On {label}, {files:,} files of {images.shape[2]}x{images.shape[1]}, {rounds} "
        "interleaved rounds:\n\n" + table(header, rows)
    )
    data = {
        "filesystem": _fs_type(place),
        "files": files,
        "size": list(images.shape[1:]),
        "seconds": times,
        "speedup_median": ratio,
    }
    return text, data


def _fs_type(path: Path) -> str:
    try:
        best, fs = "", "?"
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, fs = mount, kind
        return fs
    except OSError:
        return "?"


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            pages = int((entry / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry.name)] = ppid
        rss[int(entry.name)] = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += [c for c, pp in parents.items() if pp == p]
    return total


_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def _peak_memory(cmd: list[str]) -> tuple[int, int]:
    """(largest single process peak RSS, sampled peak RSS of the whole process tree), in KB.

    A fresh wrapper process runs the command, so its RUSAGE_CHILDREN maximum covers exactly
    this run (the CLI and its workers). The tree figure includes the ~10 MB wrapper.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, *cmd], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    tree_peak = 0
    while proc.poll() is None:
        tree_peak = max(tree_peak, _tree_rss_kb(proc.pid))
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed with exit code {proc.returncode}")
    return int(out.split()[-1]), tree_peak


#: The whole-image path, for one file: what a large PNG cost before it streamed.
_WHOLE_IMAGE = (
    "import sys; from denoise_cli.files.images import decode, encode; "
    "from denoise_cli.model.session import Denoiser; "
    "gray, info = decode(sys.argv[1]); "
    "data = encode(Denoiser(tile=int(sys.argv[2])).denoise([gray])[0], info)"
)


def bench_large_page(place: Path, side: int = 7000) -> tuple[list[list[str]], dict]:
    """Peak memory for one side x side PNG page: denoise-batch (streamed) against the
    whole-image path in a process of its own, at two tile sizes."""
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="denoise-bench-page-", dir=place))
    rows, data = [], {}
    try:
        page = noisy_digits(1)[0]
        canvas = np.zeros((side, side), np.uint8)
        for y in range(0, side - 28, 700):  # a digit every 700 px: mostly paper, as scans are
            for x in range(0, side - 28, 700):
                canvas[y : y + 28, x : x + 28] = page
        (work / "in").mkdir()
        Image.fromarray(canvas).save(work / "in" / "page.png")
        for tile in (512, 1024):
            streamed, _ = _peak_memory(
                [
                    *CLI,
                    str(work / "in"),
                    str(work / f"out-{tile}"),
                    "--quiet",
                    "--workers",
                    "1",
                    "--tile",
                    str(tile),
                ]
            )
            whole, _ = _peak_memory(
                [sys.executable, "-c", _WHOLE_IMAGE, str(work / "in" / "page.png"), str(tile)]
            )
            rows.append(
                [
                    f"{side}x{side} PNG, --tile {tile}",
                    f"{streamed / 1024:.0f}",
                    f"{whole / 1024:.0f}",
                    f"{streamed / whole:.2f}x",
                ]
            )
            data[f"page_{side}_tile_{tile}"] = {"streamed_kb": streamed, "whole_kb": whole}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows, data


def bench_memory(place: Path, small: int, large: int, page_side: int) -> tuple[str, dict]:
    work = Path(tempfile.mkdtemp(prefix="denoise-bench-mem-", dir=place))
    rows, data = [], {}
    try:
        images = noisy_digits(large)
        results = {}
        for n in (small, large):
            src = write_tree(work / f"in-{n}", images[:n])
            largest, tree = _peak_memory([*CLI, str(src), str(work / f"out-{n}"), "--quiet"])
            results[n] = (largest, tree)
            rows.append([f"{n:,}", f"{largest / 1024:.0f}", f"{tree / 1024:.0f}"])
        rows.append(
            [
                "ratio",
                f"{results[large][0] / results[small][0]:.2f}x",
                f"{results[large][1] / results[small][1]:.2f}x",
            ]
        )
        data = {str(n): {"largest_process_kb": a, "tree_kb": b} for n, (a, b) in results.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    page_rows, page_data = bench_large_page(place, page_side)
    data.update(page_data)
    files = table(
        ["files", "largest process peak RSS (MB)", "process tree peak RSS, sampled (MB)"], rows
    )
    page = table(
        ["one page", "denoise-batch, streamed (MB)", "whole-image path (MB)", "ratio"], page_rows
    )
    return f"{files}\n\n{page}", data


def bench_startup(repeats: int) -> tuple[str, dict]:
    work = Path(tempfile.mkdtemp(prefix="denoise-bench-start-"))
    try:
        write_tree(work / "in", noisy_digits(1))
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "denoise-batch --help": [*CLI, "--help"],
            "denoise-batch info": [*CLI, "info"],
            "denoise-batch on 1 image": [
                *CLI,
                str(work / "in"),
                str(work / "out"),
                "--quiet",
                "--overwrite",
            ],
        }
        data = {name: [timed(cmd) for _ in range(repeats)] for name, cmd in cases.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [[name, f"{statistics.median(t) * 1000:.0f}"] for name, t in data.items()]
    return table(["command", f"wall ms (median of {repeats})"], rows), data


def bench_gpu(quick: bool, name: str) -> tuple[str, dict]:
    import onnxruntime as ort

    from denoise_cli.model.bundled import resolve_model

    try:
        import torch
    except ImportError:
        return "skipped: torch not installed", {}
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "skipped: onnxruntime has no CUDA provider (install onnxruntime-gpu)", {}
    if not torch.cuda.is_available():
        return "skipped: torch sees no CUDA device", {}
    seconds = 0.5 if quick else 2.0
    path = str(resolve_model(name))
    net = torch_twin(path).cuda()
    rows, data = [], []
    for batch in (256, 1024, 4096):
        x = torch.rand(batch, 1, 28, 28, device="cuda")

        def run_torch(x=x):
            with torch.inference_mode():
                net(x)
            torch.cuda.synchronize()

        sess = ort.InferenceSession(path, providers=["CUDAExecutionProvider"])
        y = torch.empty_like(x)
        binding = sess.io_binding()
        binding.bind_input("noisy", "cuda", 0, np.float32, list(x.shape), x.data_ptr())
        binding.bind_output("denoised", "cuda", 0, np.float32, list(y.shape), y.data_ptr())

        def run_ort(sess=sess, binding=binding):
            sess.run_with_iobinding(binding)

        t, o = rate(run_torch, batch, seconds), rate(run_ort, batch, seconds)
        data.append({"batch": batch, "torch_cuda": t, "ort_cuda_iobinding": o})
        rows.append([batch, f"{t:,.0f}", f"{o:,.0f}", f"{o / t:.2f}x"])
    return table(
        ["batch", "torch CUDA img/s", "ORT CUDA + IO binding img/s", "ORT / torch"], rows
    ), {"rows": data}


# --- entry point -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="model,folder,scans,memory,startup,gpu")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-files", default="1000,20000")
    parser.add_argument(
        "--places",
        default=None,
        help="Comma-separated folders for the file benchmarks "
        "(default: the temp dir, and /dev/shm when present).",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="Comma-separated bundled model names for the model and gpu sections "
        "(default: the default model, and the seed conv_denoiser when that is another).",
    )
    parser.add_argument("--scans", type=int, default=500, help="Pages in the scans section.")
    parser.add_argument("--scan-side", type=int, default=640, help="Their side, in pixels.")
    parser.add_argument(
        "--page-side", type=int, default=7000, help="The memory section's one large page."
    )
    parser.add_argument("--quick", action="store_true", help="Small sizes: a smoke test.")
    parser.add_argument("--ray", action="store_true", help="Add `denoise-batch ray` to folder.")
    parser.add_argument(
        "--openvino-python",
        default=None,
        help="A Python with onnxruntime-openvino and this project installed: adds its "
        "provider to the model section and `denoise-batch` run there to folder and scans.",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.quick:
        args.files, args.rounds, args.memory_files, args.scans = 500, 1, "200,1000", 20
        args.page_side = 2500  # still over the 4.2 MP that streams
    places = (
        [Path(p) for p in args.places.split(",")]
        if args.places
        else [Path(tempfile.gettempdir())]
        + ([Path("/dev/shm")] if Path("/dev/shm").is_dir() else [])
    )
    small, large = (int(v) for v in args.memory_files.split(","))
    from denoise_cli.model.bundled import DEFAULT_MODEL

    names = (
        args.models.split(",")
        if args.models
        else list(dict.fromkeys([DEFAULT_MODEL, "conv_denoiser"]))
    )

    ov = args.openvino_python
    info = machine()
    report: dict[str, Any] = {"machine": info, "date": datetime.now(timezone.utc).isoformat()}
    md = [
        f"# denoise-batch benchmarks, {report['date'][:10]}",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
    ]
    runners = {
        "model": lambda: bench_model(args.quick, names, ov),
        "folder": lambda: bench_folder(args.files, args.rounds, places, names, args.ray, ov),
        "scans": lambda: bench_scans(args.scans, args.scan_side, args.rounds, places, names, ov),
        "memory": lambda: bench_memory(places[-1], small, large, args.page_side),
        "startup": lambda: bench_startup(3 if args.quick else 7),
        "gpu": lambda: bench_gpu(args.quick, names[0]),
    }
    for name in args.sections.split(","):
        print(f"== {name}", file=sys.stderr, flush=True)
        text, data = runners[name]()
        report[name] = data
        md += [f"## {name}", "", text, ""]
        print(f"\n## {name}\n\n{text}\n", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = (
        args.out
        / f"{platform.node() or 'host'}-{report['date'][:10]}{'-quick' if args.quick else ''}"
    )
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{stem}.md").write_text("\n".join(md))
    print(f"wrote {stem}.md and {stem}.json", file=sys.stderr)


if __name__ == "__main__":
    main()
