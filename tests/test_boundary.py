"""The runtime stays torch-free, and the real CLI process behaves (exit codes, Ctrl-C)."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, save_gray

FORBIDDEN = ("torch", "train", "export", "onnx", "onnxscript")


def test_runtime_sources_import_nothing_forbidden():
    for path in (ROOT / "denoise_cli").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_cli_run_never_loads_torch_or_training_code(tmp_path, noisy_digits):
    src = tmp_path / "in"
    for i in range(3):
        save_gray(src / f"{i}.png", noisy_digits[i])
    probe = f"""
import json, sys
from denoise_cli.cli import main
sys.argv = ["denoise-batch", {str(src)!r}, {str(tmp_path / "out")!r}, "--quiet"]
try:
    main()
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
print(json.dumps({{"code": code, "loaded": loaded}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "loaded": []}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str]) -> subprocess.Popen:
    """The CLI in a child process, with Ctrl-C's default disposition restored: a test run
    started as a background job (`cmd &`) inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt (this test failed that way under a backgrounded `.ci/run`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "denoise_cli.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path, noisy_digits, workers):
    src, out = tmp_path / "in", tmp_path / "out"
    n = 4000
    for i in range(n):
        save_gray(src / f"{i // 500}" / f"{i:05d}.png", noisy_digits[i % 16])
    args = [str(src), str(out), "--batch-size", "4", "--workers", workers, "--threads", "1"]
    proc = _start(args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(out.rglob("*.png"))):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    written = list(out.rglob("*.png"))
    assert 0 < len(written) < n
    assert not [p for p in out.rglob("*") if p.name.endswith(".denoise-tmp")]
    for p in written:  # each one whole
        from PIL import Image

        Image.open(p).load()

    proc = _start([*args, "--quiet"])
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(list(out.rglob("*.png"))) == n


def test_usage_error_exit_code_of_the_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "denoise_cli.cli", str(tmp_path), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert "output folder is the input folder" in proc.stderr
    assert Path(tmp_path).exists()
