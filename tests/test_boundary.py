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

from tests.helpers import ROOT, save_gray, start_cli

FORBIDDEN = ("torch", "denoise_train", "denoise_export", "train", "export", "onnx", "onnxscript")


def imports_of(folder: Path) -> list[tuple[str, str]]:
    """(file, imported module) for every absolute import under `folder`, lazy ones included."""
    found = []
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path.name, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((path.name, node.module))
    return found


def test_runtime_sources_import_nothing_forbidden():
    for file, name in imports_of(ROOT / "denoise_cli"):
        assert name.split(".")[0] not in FORBIDDEN, f"{file} imports {name}"


def test_package_dependencies_point_one_way():
    """denoise_cli.core <- denoise_cli (runtime); denoise_cli.core <- denoise_train <-
    denoise_export. The core imports no other part; training uses no runtime internals and
    nothing of export's."""
    for file, name in imports_of(ROOT / "denoise_cli" / "core"):
        if name.startswith("denoise_cli"):
            assert name.startswith("denoise_cli.core"), f"core/{file} imports {name}"
    for file, name in imports_of(ROOT / "train"):
        assert not name.startswith("denoise_export"), f"train/{file} imports {name}"
        if name.startswith("denoise_cli"):
            assert name.startswith("denoise_cli.core"), f"train/{file} imports {name}"
        assert name.split(".")[0] not in ("train", "export"), f"train/{file} imports {name}"
    for file, name in imports_of(ROOT / "export"):
        assert name.split(".")[0] not in ("train", "export"), f"export/{file} imports {name}"


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


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for_outputs(out: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(out.rglob("*.png"))):
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("workers", "sig", "code"),
    [("1", signal.SIGINT, 130), ("2", signal.SIGINT, 130), ("2", signal.SIGTERM, 143)],
)
def test_a_signal_stops_cleanly_and_a_rerun_resumes(tmp_path, noisy_digits, workers, sig, code):
    """SIGINT (Ctrl-C) and SIGTERM both stop the whole process tree: helpers finish their
    file and exit, the report is written, the exit code says which signal it was."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    n = 4000
    for i in range(n):
        save_gray(src / f"{i // 500}" / f"{i:05d}.png", noisy_digits[i % 16])
    args = [str(src), str(out), "--batch-size", "4", "--workers", workers, "--threads", "1"]
    proc = start_cli([*args, "--report", str(report)])
    _wait_for_outputs(out)
    helpers = children_of(proc.pid)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert f"interrupted ({signal.Signals(sig).name})" in stderr
    assert not [pid for pid in helpers if alive(pid)]
    written = list(out.rglob("*.png"))
    assert 0 < len(written) < n
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["signal"] == signal.Signals(sig).name
    assert data["written"] == len(written)
    assert not [p for p in out.rglob("*") if p.name.endswith(".denoise-tmp")]
    for p in written:  # each one whole
        from PIL import Image

        Image.open(p).load()

    proc = start_cli([*args, "--quiet"])
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


def test_kill_9_of_the_main_process_stops_its_helpers(tmp_path, noisy_digits):
    """Helpers must not go on writing for tens of seconds after their parent died: the kernel
    tells them (PR_SET_PDEATHSIG), they remove the temporary file they were writing and exit at
    once; a rerun completes."""
    src, out = tmp_path / "in", tmp_path / "out"
    n = 4000
    for i in range(n):
        save_gray(src / f"{i:05d}.png", noisy_digits[i % 16])
    args = [str(src), str(out), "--batch-size", "4", "--workers", "2", "--threads", "1"]
    proc = start_cli(args)
    _wait_for_outputs(out)
    deadline = time.monotonic() + 30
    while not (helpers := children_of(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert helpers
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while [pid for pid in helpers if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in helpers if alive(pid)]
    settled = len(list(out.rglob("*.png")))
    time.sleep(0.5)
    assert len(list(out.rglob("*.png"))) == settled < n  # nothing writes any more
    left = [p.name for p in out.rglob("*.denoise-tmp")]  # the parent's own may be there
    assert not [name for name in left for pid in helpers if f"-{pid}-" in name]
    proc = start_cli([*args, "--quiet"])
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(list(out.rglob("*.png"))) == n
    assert not [p for p in out.rglob("*") if p.name.endswith(".denoise-tmp")]


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is not None,
    reason="checks the runtime-only install (.ci/run's .venv-runtime), which has no torch",
)
def test_a_runtime_only_install_has_no_generic_names_and_no_traceback(tmp_path):
    """Installed without torch: no top-level `train` or `export` package for other projects to
    collide with, and the training commands say what to install (exit 2) instead of crashing."""
    probe = "import importlib.util as u; print([m for m in ('train', 'export') if u.find_spec(m)])"
    names = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert names.stdout.strip() == "[]", names.stderr
    bin_dir = Path(sys.executable).parent
    for command in ("denoise-train", "denoise-export"):
        proc = subprocess.run(
            [str(bin_dir / command), "--help"], cwd=tmp_path, capture_output=True, text=True
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: {command} needs torch, which is not installed")
        assert "Traceback" not in proc.stderr
