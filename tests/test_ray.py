"""The Ray runner on a local Ray instance started by the test (no external cluster)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from denoise_cli.cli import denoise_app, tools_app
from tests.helpers import save_gray

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_ray_run_matches_the_local_tool(tmp_path, noisy_digits, local_ray):
    src = tmp_path / "in"
    for i in range(30):
        save_gray(src / ["", "a", "a/b"][i % 3] / f"{i:02d}.png", noisy_digits[i % 16])
    (src / "a" / "broken.png").write_bytes(b"not a png")
    (src / "notes.txt").write_text("skip me")

    runner = CliRunner()
    report = tmp_path / "ray.json"
    on_ray = runner.invoke(
        tools_app,
        ["ray", str(src), str(tmp_path / "ray"), "--batch-size", "8", "--report", str(report)],
    )
    assert on_ray.exit_code == 1, on_ray.output
    assert "a/broken.png: cannot decode" in on_ray.output
    data = json.loads(report.read_text())
    assert data["written"] == 30 and data["failed"] == 1 and data["skipped_other"] == 1
    assert data["runner"] == "ray"

    local = runner.invoke(denoise_app, [str(src), str(tmp_path / "local"), "--workers", "1"])
    assert local.exit_code == 1
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    for name in _files(tmp_path / "local"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()

    again = runner.invoke(tools_app, ["ray", str(src), str(tmp_path / "ray"), "--batch-size", "8"])
    assert "0 written, 1 failed, 30 already done" in again.output


def test_ray_refuses_a_bad_model_before_starting(tmp_path, noisy_digits, local_ray):
    save_gray(tmp_path / "in" / "x.png", noisy_digits[0])
    result = CliRunner().invoke(
        tools_app, ["ray", str(tmp_path / "in"), str(tmp_path / "out"), "--model", "nope.onnx"]
    )
    assert result.exit_code == 3 and "nope.onnx: model file not found" in result.output
    assert not (tmp_path / "out").exists()
