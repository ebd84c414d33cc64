"""The Ray runner on a local Ray instance started by the test (no external cluster)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from denoise_cli.cli import app
from tests.helpers import save_gray

ray = pytest.importorskip("ray")


# Object-store credentials for the local S3 server below; set before Ray starts so that its
# worker processes inherit them.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def local_ray():
    saved = {k: os.environ.get(k) for k in FAKE_AWS}
    os.environ.update(FAKE_AWS)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on 127.0.0.1 (never the internet); yields the URI query string."""
    pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"endpoint_override=127.0.0.1:{port}&scheme=http&allow_bucket_creation=true"
    proc.terminate()
    proc.wait(timeout=10)


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
        app,
        ["ray", str(src), str(tmp_path / "ray"), "--batch-size", "8", "--report", str(report)],
    )
    assert on_ray.exit_code == 1, on_ray.output
    assert "a/broken.png: cannot decode" in on_ray.output
    data = json.loads(report.read_text())
    assert data["written"] == 30 and data["failed"] == 1 and data["skipped_other"] == 1
    assert data["runner"] == "ray"

    local = runner.invoke(app, [str(src), str(tmp_path / "local"), "--workers", "1"])
    assert local.exit_code == 1
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    for name in _files(tmp_path / "local"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()

    again = runner.invoke(app, ["ray", str(src), str(tmp_path / "ray"), "--batch-size", "8"])
    assert "0 written, 1 failed, 30 already done" in again.output


def test_ray_refuses_a_bad_model_before_starting(tmp_path, noisy_digits, local_ray):
    save_gray(tmp_path / "in" / "x.png", noisy_digits[0])
    result = CliRunner().invoke(
        app, ["ray", str(tmp_path / "in"), str(tmp_path / "out"), "--model", "nope.onnx"]
    )
    assert result.exit_code == 3 and "nope.onnx: model file not found" in result.output
    assert not (tmp_path / "out").exists()


def test_ray_reads_and_writes_object_storage(tmp_path, noisy_digits, local_ray, s3_server):
    from pyarrow import fs

    from denoise_cli.trees.storage import Storage

    local = tmp_path / "in"
    for i in range(10):
        save_gray(local / ["", "sub"][i % 2] / f"{i}.png", noisy_digits[i])
    (local / "sub" / "broken.png").write_bytes(b"nope")
    (local / "readme.txt").write_text("skip")
    s3, _ = fs.FileSystem.from_uri(f"s3://bucket/in?{s3_server}")
    s3.create_dir("bucket")
    fs.copy_files(
        str(local), "bucket/in", source_filesystem=fs.LocalFileSystem(), destination_filesystem=s3
    )

    src, dst = f"s3://bucket/in?{s3_server}", f"s3://bucket/out?{s3_server}"
    runner = CliRunner()
    result = runner.invoke(app, ["ray", src, dst, "--batch-size", "4"])
    assert result.exit_code == 1, result.output
    assert "10 written, 1 failed" in result.output and "1 skipped" in result.output
    assert "sub/broken.png: cannot decode" in result.output

    reference = runner.invoke(app, [str(local), str(tmp_path / "ref"), "--workers", "1"])
    assert reference.exit_code == 1
    out = Storage(dst)
    assert out.list_files() == _files(tmp_path / "ref")
    for name in _files(tmp_path / "ref"):
        assert out.read(name) == (tmp_path / "ref" / name).read_bytes()

    again = runner.invoke(app, ["ray", src, dst, "--batch-size", "4"])
    assert "0 written, 1 failed, 10 already done" in again.output


def test_ray_and_local_runs_agree_with_every_option(tmp_path, noisy_digits, local_ray):
    """The same planner, recorder and chunk code: with the same options, the same bytes and
    the same report (counts, failures, skips), whichever runner did the work."""
    import numpy as np
    from PIL import Image

    src = tmp_path / "in"
    for i in range(12):
        save_gray(src / ["", "a"][i % 2] / f"{i:02d}.png", noisy_digits[i % 16])
    Image.fromarray((np.tile(noisy_digits[0], (3, 3)) * 255).astype("uint8")).save(
        src / "a" / "big.jpg", quality=90
    )  # 84x84: tiled at --tile 32, written as PNG
    Image.fromarray((np.tile(noisy_digits[1], (8, 8)) * 255).astype("uint8")).save(
        src / "huge.png"
    )  # 224x224: over --max-pixels, a failure with a reason
    (src / "notes.txt").write_text("skip me")
    options = ["--output-format", "png", "--tile", "32", "--max-pixels", "20000"]
    options += ["--invert", "no", "--batch-size", "4", "--threads", "1"]
    runner = CliRunner()
    reports = {}
    for name, command in (("local", []), ("ray", ["ray"])):
        out, report = tmp_path / name, tmp_path / f"{name}.json"
        result = runner.invoke(app, [*command, str(src), str(out), *options, "--report", report])
        assert result.exit_code == 1, result.output
        assert "huge.png: 224x224 = 50,176 pixels is over the limit" in result.output
        reports[name] = json.loads(report.read_text())
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert "a/big.jpg.png" not in _files(tmp_path / "local")  # a/big.png: no clash to avoid
    assert "a/big.png" in _files(tmp_path / "local")
    for name in _files(tmp_path / "local"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    keys = ("found", "written", "failed", "skipped_existing", "skipped_other", "failures")
    assert {k: reports["ray"][k] for k in keys} == {k: reports["local"][k] for k in keys}
    assert reports["ray"]["skipped"] == reports["local"]["skipped"]
    assert reports["ray"]["invert"] == reports["local"]["invert"] == "no"


def test_a_chunk_that_kills_its_actor_fails_with_a_reason_and_never_hangs(
    tmp_path, noisy_digits, local_ray
):
    """An actor that dies on every try of one chunk (a segfaulting decoder, say): Ray retries
    it a bounded number of times, then every file it could not finish fails with the reason;
    the run ends, and a rerun in-process (no crash there) completes the tree."""
    from denoise_cli.run.job import Job
    from denoise_cli.run.ray_runner import LOST_ON_RAY, RayRunner
    from denoise_cli.run.runners import run_job
    from tests.helpers import Crashing

    src, out = tmp_path / "in", tmp_path / "out"
    save_gray(src / "000-crash.png", noisy_digits[0])
    for i in range(1, 24):
        save_gray(src / f"{i:03d}.png", noisy_digits[i % 16])
    job = Job(Crashing(), workers=2, max_chunk_files=4)  # type: ignore[arg-type]
    start = time.monotonic()
    report = run_job(job, src, out, runner=RayRunner())
    assert time.monotonic() - start < 120
    lost = {f.file: f.error for f in report.failures}
    assert "000-crash.png" in lost
    assert all(error.startswith(LOST_ON_RAY) for error in lost.values())
    assert report.written + report.failed == 24
    assert len(_files(out)) == report.written
    rerun = run_job(job.with_(workers=1), src, out)
    assert rerun.written == report.failed and rerun.failed == 0


def _stop_when_files_appear(out, count=1, again_after=None) -> threading.Thread:
    """SIGTERM to this process once `count` outputs are on disk (chunks are then in hand);
    a second one `again_after` s later when given."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.is_dir() and sum(p.suffix == ".png" for p in out.rglob("*")) >= count:
                os.kill(os.getpid(), signal.SIGTERM)
                if again_after is not None:
                    time.sleep(again_after)
                    os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_stop_lets_actors_finish_the_file_in_hand_and_counts_what_they_wrote(
    tmp_path, noisy_digits, local_ray
):
    """SIGTERM mid-run on Ray: actors stop after the file in hand (not killed mid-write), every
    file on disk is reported written, no temporary file is left, and a rerun writes exactly
    the rest. Before, the actors were killed at once and their written files went unreported."""
    from denoise_cli.core.errors import Interrupted
    from denoise_cli.run.job import Job
    from denoise_cli.run.ray_runner import RayRunner
    from denoise_cli.run.runners import run_job
    from tests.helpers import Slow

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(40):
        save_gray(src / f"{i:03d}.png", noisy_digits[i % 16])
    job = Job(Slow(0.2), workers=2, max_chunk_files=8)  # type: ignore[arg-type]
    watcher = _stop_when_files_appear(out)
    with pytest.raises(Interrupted) as stopped:
        run_job(job, src, out, runner=RayRunner())
    watcher.join(5)
    report = stopped.value.report
    on_disk = _files(out)
    assert all(name.endswith(".png") and not name.startswith(".") for name in on_disk)
    assert report.failed == 0 and report.written == len(on_disk) > 0
    assert report.written < 40  # stopped, not finished
    rerun = run_job(job.with_(workers=1), src, out)
    assert rerun.written == 40 - report.written and rerun.failed == 0


def test_a_chunk_that_raises_counts_what_it_wrote_and_fails_only_the_rest(
    tmp_path, noisy_digits, local_ray
):
    """A call that raises past every per-file handler (the actor lives): the files the chunk
    wrote before are reported written, the rest goes to an actor again, and what still cannot
    be done fails naming the cause. Before, every file of the chunk failed, written or not."""
    from denoise_cli.run.job import Job
    from denoise_cli.run.ray_runner import LOST_ON_RAY, RayRunner
    from denoise_cli.run.runners import run_job
    from tests.helpers import RaisesInWorkers

    src, out = tmp_path / "in", tmp_path / "out"
    names = ["000.png", "001.png", "002-boom.png", "003.png"]
    for i, name in enumerate(names):
        save_gray(src / name, noisy_digits[i])
    job = Job(RaisesInWorkers(0.05), workers=1, max_chunk_files=4)  # type: ignore[arg-type]
    report = run_job(job, src, out, runner=RayRunner())
    assert _files(out) == ["000.png", "001.png"]
    assert report.written == 2 and report.failed == 2
    errors = {f.file: f.error for f in report.failures}
    assert set(errors) == {"002-boom.png", "003.png"}
    for error in errors.values():
        assert error.startswith(LOST_ON_RAY) and "Boom: the decoder blew up" in error
    rerun = run_job(job, src, out)
    assert rerun.written == 2 and rerun.failed == 0


@pytest.mark.parametrize("second_signal", [False, True], ids=["grace-runs-out", "second-signal"])
def test_actors_killed_at_a_stop_leave_no_temporary_file_and_their_files_count(
    tmp_path, noisy_digits, local_ray, monkeypatch, second_signal
):
    """Actors blocked past the grace (a slow upload: no stop check reaches them), or a second
    signal during it: they are killed, the temporary file each was writing is removed once its
    process is gone (Ray calls an actor dead before its process has exited), and what they
    wrote is reported written. Before, both temporaries stayed, and after a second signal
    nothing was reported."""
    from denoise_cli.core.errors import Interrupted
    from denoise_cli.run import ray_runner
    from denoise_cli.run.job import Job
    from denoise_cli.run.runners import run_job
    from tests.helpers import BlocksAfterOne

    monkeypatch.setattr(ray_runner, "STOP_GRACE_S", 1.0)
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(40):
        save_gray(src / f"{i:03d}.png", noisy_digits[i % 16])
    out.mkdir()
    job = Job(BlocksAfterOne(str(out)), workers=2, max_chunk_files=10)  # type: ignore[arg-type]
    watcher = _stop_when_files_appear(out, count=2, again_after=0.3 if second_signal else None)
    with pytest.raises(Interrupted) as stopped:
        run_job(job, src, out, runner=ray_runner.RayRunner())
    watcher.join(5)
    report = stopped.value.report
    on_disk = _files(out)
    assert all(name.endswith(".png") and not name.startswith(".") for name in on_disk), on_disk
    assert report.failed == 0 and report.written == len(on_disk) == 2
