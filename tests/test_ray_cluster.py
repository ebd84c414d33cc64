"""`denoise-batch ray` on a real two-node Ray cluster (`ray start`, a head and a second node with
its own CPU and temp dir, on this machine), losing the second node in the middle of the run.

The promise holds there too: the files the lost node's actors did not finish go to the survivor,
every file is written once and whole, none fails, exit 0; OUT holds no half file and the inputs
are untouched. Slow (two Ray nodes start
and a run of ~1,000 images), so it runs with `pytest -m slow`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from denoise_cli.core.atomic import TMP_SUFFIX
from tests.helpers import save_gray, tree_hash

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

FILES = 1000
SIDE = 128  # big enough that the run lasts long enough to lose a node in it
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(folder: str) -> set[int]:
    """Processes whose command line names `folder`: every process of one Ray node started
    with its own --temp-dir (raylet, agents, log monitor), then their children (workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if folder in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.add(int(entry.name))
            except OSError:
                continue
    return found | {child for pid in found for child in _descendants(pid)}


def _descendants(pid: int) -> set[int]:
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children |= {int(entry.name)} | _descendants(int(entry.name))
    return children


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _ray(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "ray"), "start", "--disable-usage-stats", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, f"ray start {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def cluster():
    """A head (1 CPU) and a second node (1 CPU), each with its own short temp dir (Ray's socket
    paths must stay under 107 bytes), and a token of its own: Ray 2.60's head turned token
    authentication on where ~/.ray/auth_token existed, and a node without the token could not
    join. Yields the address, the second node's temp dir and the environment to talk to it."""
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip("no `ray` command")
    root = tempfile.mkdtemp(prefix="drc", dir="/tmp")
    head, second = f"{root}/head", f"{root}/second"
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    try:
        _ray(env, "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={head}",
             "--include-dashboard=false")  # fmt: skip
        _ray(env, f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--temp-dir={second}")
        yield f"127.0.0.1:{port}", second, env
    finally:
        _kill(_processes_under(second) | _processes_under(head))
        shutil.rmtree(root, ignore_errors=True)


def _noisy_tree(root: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(FILES):
        digit = np.zeros((SIDE, SIDE), np.float32)
        digit[32:96, 56:72] = 1.0  # a stroke, so the model has ink to keep
        noisy = np.clip(digit + rng.normal(0, 0.5, digit.shape), 0, 1).astype(np.float32)
        save_gray(root / f"d{i % 10}" / f"{i:04d}.png", noisy)


def _outputs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_losing_a_node_mid_run_keeps_the_promise(tmp_path, cluster):
    address, second_node, env = cluster
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    _noisy_tree(src)
    before = tree_hash(src)
    cmd = [str(BIN / "denoise-batch"), "ray", str(src), str(out), "--address", address,
           "--workers", "2", "--cpus-per-worker", "1", "--batch-size", "16",
           "--report", str(report)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 240
    while len(_outputs(out)) < FILES // 10 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    written_at_kill = len(_outputs(out))
    inodes_at_kill = {p: p.stat().st_ino for p in _outputs(out)}
    node = _processes_under(second_node)
    assert node, "the second node has no processes to lose"
    assert any(b"ChunkActor" in Path(f"/proc/{p}/cmdline").read_bytes() for p in node if
               Path(f"/proc/{p}/cmdline").exists()), "no actor ran on the second node"  # fmt: skip
    _kill(node)  # the node is gone: raylet, agents, and the actor working on it
    output, _ = proc.communicate(timeout=300)
    print(f"written at the kill: {written_at_kill}; after: {output.splitlines()[-1]}")
    assert written_at_kill < FILES, "the run ended before the node was lost"

    assert proc.returncode == 0, output  # the lost node's files went to the survivor
    data = json.loads(report.read_text())
    assert (data["written"], data["failed"], data["unfinished"]) == (FILES, 0, 0), output
    # Written once: what was on disk at the kill was not written again (same inode).
    assert {p: p.stat().st_ino for p in inodes_at_kill} == inodes_at_kill
    files = _outputs(out)
    assert not [p for p in files if p.name.startswith(".") or TMP_SUFFIX in p.name]
    for path in files:  # every output is whole: it decodes, at the input's size
        with Image.open(path) as img:
            img.load()
            assert img.size == (SIDE, SIDE)
    assert tree_hash(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "report.json"]

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(_outputs(out)) == FILES
    again = json.loads(report.read_text())
    assert again["failed"] == 0 and again["written"] + again["skipped_existing"] == FILES
