"""The benchmark suite times the network it claims to: each bundled model against its torch twin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from benchmarks.run import machine, torch_twin  # noqa: E402
from denoise_cli.model.bundled import bundled_models  # noqa: E402
from denoise_train.models import count_params  # noqa: E402
from tests.helpers import ROOT  # noqa: E402


@pytest.mark.parametrize("name", sorted(bundled_models()))
def test_torch_twin_is_the_exported_architecture(name):
    path = bundled_models()[name]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert count_params(torch_twin(path)) == int(meta["parameters"])


def test_machine_records_the_vector_unit():
    assert machine()["simd"] in {"AMX", "AVX-512 + BF16", "AVX-512", "AVX2", "SSE4.2", "unknown"}


class _Clock:
    """A stand-in for time.perf_counter that only moves when the timed call says so: the
    test then measures the timers' logic, not how busy the machine running it is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _slow_then_fast(clock: _Clock, slow_s: float = 0.05, fast_s: float = 0.0005, slow_calls=8):
    """A call that takes 50 ms for its first 8 calls (another process hogging the CPU, say),
    then 0.5 ms: 2,000 calls/s undisturbed, about 420/s as one long mean."""
    calls = 0

    def fn() -> None:
        nonlocal calls
        clock.now += slow_s if calls < slow_calls else fast_s
        calls += 1

    return fn


def test_timers_report_the_undisturbed_window(monkeypatch):
    from benchmarks.run import rate
    from denoise_cli.core.timing import best_rate

    clock = _Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    assert rate(_slow_then_fast(clock, slow_calls=11), 10, 0.5) == pytest.approx(20_000)
    assert best_rate(_slow_then_fast(clock), 0.5) == pytest.approx(2_000)


@pytest.mark.slow
def test_quick_model_section_writes_a_table_per_model(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--sections", "model"]
    cmd += ["--models", "conv_denoiser", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "### conv_denoiser" in done.stdout and "ORT fp32 / torch" in done.stdout
    (report,) = tmp_path.glob("*.json")
    rows = json.loads(report.read_text())["model"]["models"]["conv_denoiser"]
    assert {r["batch"] for r in rows} == {1, 32, 256, 1024}
    assert all(r["ort_fp32"] > 0 and r["torch_eager"] > 0 for r in rows)


def test_the_gpu_check_exits_cleanly_without_a_gpu(tmp_path):
    """scripts/gpu_check.sh is meant for a lent GPU machine; elsewhere it must say so, exit 0
    and install nothing (no nvidia-smi on PATH: a stand-in that fails like a GPU-less host)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 9\n")
    (fake_bin / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:/usr/bin:/bin", "GPU_VENV": str(tmp_path / "v")}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no NVIDIA GPU on this machine" in proc.stdout
    assert not (tmp_path / "v").exists()


def test_widths_times_each_width_against_the_seed(tmp_path, monkeypatch):
    """Real exports and counts; fake model calls on a fake clock (1, 2 and 4 ms a call), so the
    images/s and ratios in the table are exact."""
    from benchmarks import widths

    clock = _Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    call_s = {
        "conv_denoiser": 0.001,
        "unet-8-16-64": 0.002,
        "unet-8-16-96": 0.004,
        "unet_lite_nl-8-16-64": 0.0025,
    }

    def fake_runner(path, threads, batch):
        assert threads == 2 and batch == 8

        def call():
            clock.now += call_s[path.stem]

        return call

    monkeypatch.setattr(widths, "runner", fake_runner)
    args = ["--widths", "8-16-96", "--rounds", "2", "--seconds", "0.05", "--batch", "8"]
    widths.main([*args, "--archs", "unet_lite_nl", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "widths.json").read_text())
    rows = {tuple(r["widths"]): r for r in report["rows"] if r["arch"] == "unet_lite_near"}
    (nl,) = [r for r in report["rows"] if r["arch"] == "unet_lite_nl"]
    assert nl["parameters"] == 138_649 and nl["images_per_s"] == pytest.approx(3_200)
    assert rows[(8, 16, 64)]["parameters"] == 134_441  # unet_lite_near, as registered
    assert rows[(8, 16, 64)]["multiply_adds"] == 12_560
    assert rows[(8, 16, 96)]["multiply_adds"] > rows[(8, 16, 64)]["multiply_adds"]
    assert report["seed_images_per_s"] == pytest.approx(8_000)
    assert rows[(8, 16, 64)]["images_per_s"] == pytest.approx(4_000)
    table = (tmp_path / "widths.md").read_text()
    assert "| seed conv_denoiser | 3,217 | - | 8,000 | 1.00x | |" in table
    assert "| 8-16-64 (unet_lite_near) | 134,441 | 12,560 | 4,000 | 0.50x | 1.00x |" in table
    assert "| 2,000 | 0.25x | 0.50x |" in table  # 8-16-96
    assert "| unet_lite_nl 8-16-64 | 138,649 |" in table and "| 3,200 | 0.40x | 0.80x |" in table
    for bad in ("8-16", "8-x-64", "8-16-64,"):
        with pytest.raises(SystemExit, match="three positive widths"):
            widths.parse_widths(bad)


@pytest.mark.parametrize(
    ("module", "args", "row"),
    [
        (
            "benchmarks.colour",
            ["--count", "20", "--model", "conv_denoiser"],
            "| blue | clean | add |",
        ),
        ("benchmarks.border", ["--models", "conv_denoiser"], "| conv_denoiser | zeros (before) |"),
        ("benchmarks.tiny", ["--count", "20", "--models", "conv_denoiser"], "| runtime (policy) |"),
    ],
)
def test_fidelity_benchmarks_print_their_tables(module, args, row):
    """The measurements behind the runtime's colour, border and tiny-image choices still run."""
    from tests.helpers import mnist_dir

    if not (mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs the MNIST test files")
    cmd = [sys.executable, "-m", module, *args, "--mnist", str(mnist_dir())]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert row in result.stdout


def test_the_codec_benchmark_decodes_what_the_runtime_writes():
    """benchmarks/codecs.py, behind keeping fastpng: every codec it times reads the same pixels
    back, so the table compares equal work."""
    from benchmarks.codecs import codecs, images, table
    from denoise_cli.files import fastpng

    pixels = images(3, 28, sigma=0.02)
    for name, (decode, encode) in codecs().items():
        if decode is not None:
            assert np.array_equal(decode(fastpng.encode_gray(pixels[0])), pixels[0]), name
        if encode is not None:
            assert np.array_equal(fastpng.decode_gray8(encode(pixels[1]), 1 << 20)[0], pixels[1])
    rows = table(files=4, rounds=1)
    assert any("| 28x28 digit | Pillow (level 1) |" in row for row in rows)
    assert any("| 512x512 page | fastpng (ours" in row for row in rows)


def test_the_pages_benchmark_measures_each_format_through_the_runtime(tmp_path):
    """benchmarks/pages.py, behind keeping Pillow for non-PNG pages: every format's row comes
    from a real run that wrote its output, with the process's own peak memory."""
    cmd = [sys.executable, "-m", "benchmarks.pages", "--size", "160", "--model", "conv_denoiser"]
    cmd += ["--work", str(tmp_path), "--json", str(tmp_path / "pages.json")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "pages.json").read_text())["rows"]
    assert [r["format"] for r in rows] == ["PNG", "TIFF (LZW)", "JPEG (q90)", "WebP (q90)"]
    for row in rows:
        assert 10 < row["Pillow decode MB"] < row["runtime MB"] < 2000, row
    assert "| PNG |" in result.stdout and "1.00x |" in result.stdout


def test_the_display_gap_benchmark_scores_each_case(tmp_path):
    """benchmarks/display_gap.py, behind the diagnosis in docs/models.md: every case runs, each
    model gets a row cell, and the JSON holds what the table shows."""
    from denoise_cli.model.bundled import bundled_models

    model = bundled_models()["conv_denoiser"]
    cmd = [sys.executable, "-m", "benchmarks.display_gap", str(model), "--count", "2"]
    result = subprocess.run(
        [*cmd, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "display_gap.json").read_text())
    assert len(saved["rows"]) == 9 and all(r["conv_denoiser.onnx"] > 5 for r in saved["rows"])
    assert "| world reading, 12-40 px, 64x64 |" in (tmp_path / "display_gap.md").read_text()
