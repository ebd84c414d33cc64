"""The promises a user pointing denoise-batch at their only copy relies on, tried as a hostile
user would: inputs never change however the trees are reached, nothing lands outside OUT, no
run hangs, and output that cannot be right is a failure with a reason, never a file.

Every test builds the situation for real (symlinks, FIFOs, bind mounts and tmpfs where the test
may mount, models built with onnx.helper) and checks the input tree's hashes before and after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from denoise_cli.cli import app
from tests.helpers import ROOT, load_gray, save_gray, tree_hash


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def src(tmp_path, noisy_digits) -> Path:
    root = tmp_path / "in"
    for i in range(4):
        save_gray(root / f"{i}.png", noisy_digits[i])
        save_gray(root / "sub" / f"{i}.png", noisy_digits[i + 4])
    return root


# --- inputs are never written, however the trees are reached --------------------------------


def test_a_symlinked_folder_in_out_pointing_into_in_is_never_followed(tmp_path, src):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(src / "sub")
    before = tree_hash(src)
    result = run(src, out, "--overwrite", "--workers", "1")
    assert result.exit_code == 1, result.output
    assert "output folder sub is a symlink or not a folder" in result.output
    assert tree_hash(src) == before
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "2.png", "3.png", "sub"]


def test_a_symlinked_folder_in_out_pointing_elsewhere_gets_nothing(tmp_path, src):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere)
    result = run(src, out)
    assert result.exit_code == 1
    assert files_under(elsewhere) == ["keep.txt"]


def test_out_reached_through_a_bind_mount_of_in_is_refused(tmp_path, src):
    """A bind mount makes an input folder look like another folder: by path it is outside IN,
    by device and inode it is IN. Needs root and mount; skipped elsewhere."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "--bind", str(src / "sub"), str(out / "sub")], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        before = tree_hash(src)
        result = run(src, out, "--overwrite")
        assert result.exit_code == 1, result.output
        assert "output folder sub is a folder of the input tree" in result.output
        assert tree_hash(src) == before
        whole = tmp_path / "whole"
        whole.mkdir()
        subprocess.run(["mount", "--bind", str(src), str(whole)], check=True)
        try:
            result = run(src, whole, "--overwrite")
            assert result.exit_code == 2 and "a folder of the input tree" in result.output
        finally:
            subprocess.run(["umount", str(whole)], check=True)
        assert tree_hash(src) == before
    finally:
        subprocess.run(["umount", str(out / "sub")], check=True)


def test_the_report_never_lands_on_an_input(tmp_path, src):
    before = tree_hash(src)
    for report in (src / "0.png", src / "sub" / "new.json", tmp_path):
        result = run(src, tmp_path / "out", "--report", report)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ")
    assert tree_hash(src) == before
    assert not (tmp_path / "out").exists()  # refused before any work


def test_the_report_never_takes_an_outputs_name(tmp_path, src):
    """--report OUT/0.png overwrote that output with JSON, and reruns counted it done; a report
    inside OUT under an image's name is refused before any work, a .json one is fine."""
    out = tmp_path / "out"
    for report in (out / "0.png", out / "sub" / "x.TIF"):
        result = run(src, out, "--report", report)
        assert result.exit_code == 2, result.output
        assert "an image's name inside the output folder" in result.output
    assert not out.exists()
    assert run(src, out, "--report", out / "report.json").exit_code == 0
    assert json.loads((out / "report.json").read_text())["written"] == 8


def test_an_unwritable_report_is_refused_before_the_work(tmp_path, src):
    """A report under a file (no folder can be made there) was an error after the whole run;
    it is found with the other output checks now, before any image is read."""
    (tmp_path / "file").write_text("a file, not a folder")
    result = run(src, tmp_path / "out", "--report", tmp_path / "file" / "r.json")
    assert result.exit_code == 2, result.output
    assert "file is not a folder" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_the_same_file_as_input_and_output_is_a_usage_error(tmp_path, src):
    before = tree_hash(src)
    result = run(src / "0.png", src / "0.png")
    assert result.exit_code == 2 and "output is the input file itself" in result.output
    assert tree_hash(src) == before


def test_one_file_into_a_new_name_like_an_image_is_refused_not_made_a_folder(tmp_path, src):
    """`denoise-batch 0.png clean.png` made a folder clean.png holding clean.png/0.png."""
    result = run(src / "0.png", tmp_path / "clean.png")
    assert (
        result.exit_code == 2 and "OUT is a folder (the result goes to OUT/0.png)" in result.output
    )
    assert not (tmp_path / "clean.png").exists()
    (tmp_path / "shots.png").mkdir()  # a folder the user did make is theirs to use
    assert run(src / "0.png", tmp_path / "shots.png").exit_code == 0
    assert (tmp_path / "shots.png" / "0.png").is_file()


def test_an_input_swapped_for_a_symlink_after_the_walk_is_not_followed(tmp_path, src):
    from denoise_cli.core.errors import ImageError
    from denoise_cli.trees.plan import open_trees

    secret = tmp_path / "secret.png"
    secret.write_bytes((src / "1.png").read_bytes())
    source, _ = open_trees(src, tmp_path / "out")
    jobs = [(f.prefix, f.images) for f in source.folders()]
    assert jobs[0] == ("", ["0.png", "1.png", "2.png", "3.png"])
    (src / "1.png").unlink()
    (src / "1.png").symlink_to(secret)  # after the walk, before the read
    with pytest.raises(ImageError, match="now a symlink pointing outside the input tree"):
        source.read(source.path("1.png"))
    assert source.read(source.path("0.png"))[:4] == b"\x89PNG"


# --- nothing outside OUT -------------------------------------------------------------------------


def test_a_run_writes_nothing_under_home(tmp_path, src):
    """onnxruntime's telemetry would write ~/.cache/Microsoft/...; a run writes only OUT."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("ORT_DISABLE_TELEMETRY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "denoise_cli.cli", str(src), str(tmp_path / "out"), "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert list(home.rglob("*")) == []


# --- no run hangs ------------------------------------------------------------------------------


def test_a_fifo_named_like_an_image_is_skipped_not_read(tmp_path, src):
    os.mkfifo(src / "a.png")
    proc = subprocess.run(
        [sys.executable, "-m", "denoise_cli.cli", str(src), str(tmp_path / "out"), "--jsonl"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    skipped = [e for e in events if e["event"] == "skipped"]
    assert [(Path(e["file"]).name, e["reason"]) for e in skipped] == [
        ("a.png", "not a regular file (a pipe, device...)")
    ]
    score = subprocess.run(
        [sys.executable, "-m", "denoise_cli.cli", "score", str(tmp_path / "out"), str(src)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert score.returncode == 0, score.stderr


def test_a_broken_link_is_skipped_and_named_as_one(tmp_path, src):
    # Was "not a regular file (a pipe, device...)" inside the tree, "pointing outside" for an
    # absolute target: neither says the link's target is gone.
    (src / "gone.png").symlink_to(src / "deleted.png")
    (src / "sub" / "far.png").symlink_to("/nonexistent/scan.png")
    (src / "loop.png").symlink_to("loop.png")
    report = tmp_path / "report.json"
    assert run(src, tmp_path / "out", "--report", report).exit_code == 0
    skipped = json.loads(report.read_text())["skipped"]
    assert sorted((s["file"], s["reason"]) for s in skipped) == [
        ("gone.png", "broken link: its target does not exist"),
        ("loop.png", "broken link: a loop of symlinks"),
        ("sub/far.png", "broken link: its target does not exist"),
    ]
    assert len(files_under(tmp_path / "out")) == 8
    (tmp_path / "link").symlink_to(tmp_path / "moved")  # IN itself: was "input does not exist"
    result = run(tmp_path / "link", tmp_path / "out2")
    assert result.exit_code == 2
    assert f"{tmp_path / 'link'}: broken link: its target does not exist" in result.output


def test_jsonl_into_a_closed_pipe_still_finishes_the_run(tmp_path, src):
    out = tmp_path / "out"
    command = (
        f"{sys.executable} -m denoise_cli.cli {src} {out} --jsonl | head -1; "
        "exit ${PIPESTATUS[0]}"
    )
    proc = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["event"] == "start"
    assert len(files_under(out)) == 8


# --- output that cannot be right is a failure --------------------------------------------------


def _model(path: Path, nodes, inits=()) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, None, None])],
        initializer=list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("node", "error"),
    [
        ("ReduceMean", "model returned 1 image(s) for a batch of 4; nothing written"),
        ("Transpose", "image for a 92x72 model input; nothing written"),  # mirrored out
    ],
)
def test_a_model_output_of_the_wrong_shape_is_never_spread_over_a_batch(tmp_path, node, error):
    """A model averaging its batch into one image passes the one-image load check; numpy would
    copy that one result into all four files (exit 0) before. Each file fails instead, in the
    tool's words (a transposed output used to fail in numpy's)."""
    pytest.importorskip("onnx")
    from onnx import helper

    attrs = {"axes": [0], "keepdims": 1} if node == "ReduceMean" else {"perm": [0, 1, 3, 2]}
    model = _model(tmp_path / "m.onnx", [helper.make_node(node, ["x"], ["y"], **attrs)])
    rng = np.random.default_rng(0)
    for i in range(4):
        save_gray(tmp_path / "in" / f"{i}.png", rng.random((40, 60)))
    result = run(tmp_path / "in", tmp_path / "out", "--model", model, "--workers", "1")
    assert result.exit_code == 1, result.output
    assert "0 written, 4 failed" in result.output
    assert result.output.count(error) == 4, result.output
    assert files_under(tmp_path / "out") == []


def test_a_failing_name_with_control_characters_stays_one_harmless_line(tmp_path, src):
    """A newline in a failing file's name split the listing in two; an escape sequence in one
    recoloured the terminal. Both are shown as escapes; the run goes on."""
    for name in ("bad\nname.png", "red\x1b[31m.png"):
        (src / name).write_bytes(b"not an image")
    result = run(src, tmp_path / "out")
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    lines = result.output.splitlines()
    assert "  bad\\nname.png: cannot decode: not a recognised image" in "\n".join(lines)
    assert any(line.startswith("  red\\x1b[31m.png: cannot decode") for line in lines)
    assert "8 written, 2 failed" in result.output


def test_a_model_returning_nan_writes_nothing(tmp_path, src):
    pytest.importorskip("onnx")  # builds the model; the runtime-only install has no onnx
    from onnx import helper, numpy_helper

    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    model = _model(
        tmp_path / "nan.onnx",
        [
            helper.make_node("Add", ["x", "one"], ["a"]),
            helper.make_node("Neg", ["a"], ["b"]),
            helper.make_node("Sqrt", ["b"], ["y"]),  # sqrt of a negative number: NaN
        ],
        [one],
    )
    result = run(src, tmp_path / "out", "--model", model)
    assert result.exit_code == 1
    assert "0 written, 8 failed" in result.output
    assert "model returned NaN or infinite values; nothing written" in result.output
    assert files_under(tmp_path / "out") == []


def test_a_model_returning_the_wrong_size_writes_nothing_for_that_file(tmp_path, src):
    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    arrays = {"starts": [0, 0], "ends": [28, 28], "axes": [2, 3]}
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in arrays.items()]
    model = _model(
        tmp_path / "crop.onnx",
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])],
        inits,
    )  # at most 28x28 out: right for digits, wrong for anything larger
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(src / "big.png")
    result = run(src, tmp_path / "out", "--model", model)
    assert result.exit_code == 1
    assert "big.png: model returned a 28x28 image for a 40x40 model input" in result.output
    assert "big.png" not in files_under(tmp_path / "out")
    assert load_gray(tmp_path / "out" / "0.png").shape == (28, 28)


def test_an_unlistable_subfolder_is_a_failure_with_its_reason(tmp_path, src, monkeypatch):
    """A folder the run cannot list holds images it cannot process: a failure (exit 1), not a
    quiet skip. Root reads any folder, so the listing error is raised by a stand-in."""
    real_scandir = os.scandir

    def scandir(path="."):
        name = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else str(path)
        if name.endswith("sub"):  # listed through a descriptor (dirfd)
            raise PermissionError(13, "Permission denied", name)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = run(src, tmp_path / "out", "--workers", "1")
    assert result.exit_code == 1
    assert "sub: cannot list folder: Permission denied" in result.output
    assert len(files_under(tmp_path / "out")) == 4


# --- usage errors, not garbage ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--level", "nan"], "must be >= 0"),
        (["--level", "-1"], "must be >= 0"),
        (["--seed", "-1"], "-1 is not in the range x>=0"),
        (["--noise", "pink"], "'pink' is not one of"),
    ],
)
def test_noisify_refuses_bad_settings_before_any_file(tmp_path, src, args, message):
    result = run("noisify", src, tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_a_folder_named_like_a_command_is_an_input_through_run(tmp_path, src, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src.rename(tmp_path / "score")
    result = run("run", "score", "out")
    assert result.exit_code == 0, result.output
    assert len(files_under(tmp_path / "out")) == 8


def test_score_json_at_a_folder_is_a_usage_error(tmp_path, src):
    result = run("score", src, src, "--json", tmp_path)
    assert result.exit_code == 2 and "is a folder; name a file" in result.output


# --- limits ---------------------------------------------------------------------------------


def test_a_file_name_at_the_file_system_limit_is_written(tmp_path, noisy_digits):
    src = tmp_path / "in"
    name = "d" * (255 - len(".png")) + ".png"  # 255 bytes: the longest legal name
    save_gray(src / name, noisy_digits[0])
    result = run(src, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path / "out") == [name]


def test_a_full_disk_fails_files_with_reasons_and_leaves_nothing_partial(tmp_path, noisy_digits):
    """A 64 KiB tmpfs as OUT fills after a few digits: the rest fail with the system's reason,
    every file on disk is whole, no temporary file is left. Needs mount; skipped elsewhere."""
    out = tmp_path / "out"
    out.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(out)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        src = tmp_path / "in"
        rng = np.random.default_rng(0)
        for i in range(200):  # random pixels do not compress: ~800 bytes each
            save_gray(src / f"{i:03d}.png", rng.random((28, 28)).astype(np.float32))
        result = run(src, out, "--workers", "1")
        assert result.exit_code == 1
        assert "No space left on device" in result.output
        written = files_under(out)
        assert 0 < len(written) < 200
        for name in written:
            Image.open(out / name).load()
        assert not [p for p in out.rglob("*") if p.name.endswith(".denoise-tmp")]
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_a_file_uri_gets_the_local_rules(tmp_path, src):
    """file:///... is a local path: spelled with '..' or '//' it is still IN, and refused."""
    from denoise_cli.core.errors import UsageError
    from denoise_cli.trees.plan import LocalSource, LocalTarget, open_trees

    for out in (f"file://{src}/sub", f"file://{src}/x/../sub", f"file://{tmp_path}//in"):
        with pytest.raises(UsageError, match="input folder"):
            open_trees(src, out)
    source, target = open_trees(f"file://{src}", f"file://{tmp_path}/out")
    assert isinstance(source, LocalSource) and isinstance(target, LocalTarget)


def test_ray_refuses_uris_of_local_folders(tmp_path, src):
    """pyarrow opens 'local:///x' as the local disk: before, `ray IN local://IN --overwrite`
    replaced every input (the overlap check compared it with file://IN as text, and the local
    rules never applied). Only a path or file:/// reaches a local folder now."""
    pytest.importorskip("pyarrow")
    from denoise_cli.core.errors import UsageError
    from denoise_cli.trees.plan import open_trees

    before = tree_hash(src)
    for out in (f"local://{src}", f"local://{src}/sub", f"local://{tmp_path}/out"):
        with pytest.raises(UsageError, match="a local folder; give its path"):
            open_trees(src, out)
        with pytest.raises(UsageError, match="a local folder; give its path"):
            open_trees(out, "mock:///out")
    result = run("ray", src, f"local://{src}", "--overwrite")
    assert result.exit_code == 2 and "a local folder" in result.output
    assert tree_hash(src) == before and not (tmp_path / "out").exists()


def test_stores_are_kept_apart_by_the_folders_pyarrow_opens(tmp_path):
    """Two store URIs naming one folder, or one inside the other, in any spelling (a trailing
    '/' before the query, the query in another order, '//'): refused. Before, the URIs were
    compared as text, and 'ray s3://b/in?Q s3://b/in/?Q --overwrite' replaced all 24 inputs of
    a local S3 server. An in-memory store is refused as OUT (each worker has its own)."""
    pytest.importorskip("pyarrow")
    from denoise_cli.core.errors import UsageError
    from denoise_cli.trees.plan import open_trees

    q = "endpoint_override=127.0.0.1:9&scheme=http"  # never contacted: nothing is listed
    swapped = "scheme=http&endpoint_override=127.0.0.1:9"
    for src, out, why in (
        (f"s3://b/in?{q}", f"s3://b/in/?{q}", "output is the input"),
        (f"s3://b/in?{q}", f"s3://b/in?{swapped}", "output is the input"),
        (f"s3://b/in?{q}", f"s3://b//in?{q}", "output is the input"),
        (f"s3://b/in?{q}", f"s3://b/./in/?{q}", "output is the input"),
        (f"s3://b/in?{q}", f"s3://b/in/out?{swapped}", "output is inside the input"),
        (f"s3://b/in/sub/?{q}", f"s3://b//in?{q}", "input is inside the output"),
    ):
        with pytest.raises(UsageError, match=why):
            open_trees(src, out)
    open_trees(f"s3://b/in?{q}", f"s3://b/input?{q}")  # a sibling whose name starts alike
    open_trees(f"s3://b/in?{q}", f"s3://c/in?{q}")
    for src in (f"s3://b/in?{q}", tmp_path):
        with pytest.raises(UsageError, match="in-memory store"):
            open_trees(src, "mock:///out")


def test_run_refuses_uris_and_points_to_ray(tmp_path, src, monkeypatch):
    """A URI given to `run` or `noisify` (which write local folders) is refused whatever its
    scheme, never taken as a relative folder named 's3:' or 'local:'; file:// is a local path."""
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in ([], ["noisify"]):
        for out in ("s3://bucket/out", "local:///tmp/x", "gs:/bucket/out", "file://far/tmp/x"):
            result = run(*command, src, out)
            assert result.exit_code == 2, (out, result.output)
            assert out in result.output
        assert "denoise-batch ray" in run(*command, "s3://bucket/in", tmp_path / "o").output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    for out in (f"file://{tmp_path}/o#1", f"file://{tmp_path}/o?x", "file://localhost"):
        assert run(src, out).exit_code == 2, out
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert run(src, "file:out").exit_code == 0  # no '/' after 'file:': a folder of that name
    assert files_under(tmp_path / "file:out") == files_under(src)
    assert run(f"file://{src}", f"file://{tmp_path}/out").exit_code == 0
    assert run("noisify", f"file://{src}", f"file://localhost{tmp_path}/noisy").exit_code == 0
    assert files_under(tmp_path / "out") == files_under(tmp_path / "noisy") == files_under(src)


@pytest.mark.parametrize("dir_fd_writes", [True, False])
def test_both_write_paths_refuse_the_same_folders(tmp_path, src, monkeypatch, dir_fd_writes):
    """Where the OS has no directory descriptors for writes (Windows), folders are checked by
    lstat: the same outputs, the same refusals."""
    from denoise_cli.trees import plan

    monkeypatch.setattr(plan, "DIR_FD_WRITES", dir_fd_writes)
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "sub").symlink_to(src / "sub")
    before = tree_hash(src)
    result = run(src, out, "--overwrite", "--workers", "1")
    assert result.exit_code == 1
    assert "output folder sub is a symlink or not a folder" in result.output
    assert tree_hash(src) == before
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "2.png", "3.png", "a", "sub"]
    again = run(src, tmp_path / "fresh", "--workers", "1")
    assert again.exit_code == 0 and len(files_under(tmp_path / "fresh")) == 8


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_killed_writer_not_yet_reaped_counts_as_gone():
    """A killed process its parent has not reaped (a zombie: Ray's raylet reaps actors a moment
    later) writes nothing more: its temporary files are stale. A live one's are not."""
    from denoise_cli.core.atomic import process_gone

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not process_gone(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while not process_gone(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process_gone(child.pid)
        state = Path(f"/proc/{child.pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
        assert state == b"Z"  # not reaped yet: os.kill(pid, 0) alone says it exists
    finally:
        child.wait()
    assert process_gone(child.pid)


def test_a_killed_runs_temporary_files_are_cleared_by_the_next_run(tmp_path, noisy_digits):
    """kill -9 in the middle of a write leaves '.NAME.HOST-PID-...denoise-tmp' (nothing can
    clean up after SIGKILL). The next run removes those whose writer is gone and keeps a live
    one's, one another host or container wrote (a shared OUT: its pid means nothing here) and
    one whose 'pid' no process can have (no crash either)."""
    from denoise_cli.core.atomic import host_tag, temporary_name

    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_gray(src / "sub" / f"{i}.png", noisy_digits[i])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now: a writer that is gone
    (out / "sub").mkdir(parents=True)
    stale = out / "sub" / temporary_name("1.png", dead.pid)
    older = out / "sub" / f".0.png.{dead.pid}-140000-7.denoise-tmp"  # before host tags
    live = out / "sub" / temporary_name("2.png")  # this test still runs
    other_host = "0" * 8 if host_tag() != "0" * 8 else "1" * 8
    elsewhere = out / "sub" / f".2.png.{other_host}-{dead.pid}-1-0.denoise-tmp"
    absurd = out / "sub" / f".2.png.{host_tag()}-9999999999-1-0.denoise-tmp"
    mine = out / "sub" / "notes.denoise-tmp"  # not our pattern: never touched
    for path in (stale, older, live, elsewhere, absurd):
        path.write_bytes(b"half a png")
    mine.write_text("keep")
    result = run(src, out)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and not older.exists()
    assert live.exists() and elsewhere.exists() and absurd.exists()
    assert mine.read_text() == "keep"
    assert sorted(p.name for p in (out / "sub").glob("*.png")) == ["0.png", "1.png", "2.png"]


# --- round three: one rule for every file written (denoise_cli.core.safety) --------------------


def test_score_json_onto_a_reference_or_a_result_is_refused(tmp_path, src):
    results = tmp_path / "results"
    assert run(src, results).exit_code == 0
    before, results_before = tree_hash(src), tree_hash(results)
    for target in (src / "0.png", src / "sub" / "new.json", results / "scores.json"):
        result = run("score", results, src, "--json", target)
        assert result.exit_code == 2, result.output
        assert "--json" in result.output and "inside the input" in result.output
    assert tree_hash(src) == before and tree_hash(results) == results_before


@pytest.mark.parametrize("kind", ["device", "link to a device", "fifo", "link to a file"])
def test_reports_never_replace_devices_or_follow_links(tmp_path, src, kind):
    target, outside = tmp_path / "report.json", tmp_path / "kept.json"
    outside.write_text("mine")
    if kind == "device":
        target = Path("/dev/full")
    elif kind == "link to a device":
        target.symlink_to("/dev/null")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(outside)
    before = os.lstat(target)
    for args in (["--report", target], ["score", src, src, "--json", target]):
        command = [src, tmp_path / "out", *args] if args[0] == "--report" else args
        result = run(*command)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and "Traceback" not in result.output
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino,
                                                            before.st_rdev)  # fmt: skip
    assert outside.read_text() == "mine" and not (tmp_path / "out").exists()


def test_a_report_swapped_for_a_device_link_after_the_check_is_not_written_through(tmp_path):
    from denoise_cli.core.safety import write_output_file

    target = tmp_path / "r.json"
    target.symlink_to("/dev/full")
    with pytest.raises(Exception, match="symlink"):
        write_output_file(target, b"{}")
    assert target.is_symlink()


def test_train_and_export_refuse_outputs_under_the_same_rule(tmp_path):
    bin_dir = Path(sys.executable).parent
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    link = tmp_path / "link.onnx"
    link.symlink_to("/dev/null")
    calls = [
        [bin_dir / "denoise-export", "export", checkpoint, "-o", checkpoint],
        [bin_dir / "denoise-export", "export", checkpoint, "-o", link],
        [bin_dir / "denoise-train", "fit", "--dry-run", "--out", link],
        [bin_dir / "denoise-train", "fit", "--dry-run", "--out", "/dev/full"],
    ]
    for call in calls:
        done = subprocess.run([str(c) for c in call], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (call, done.stderr)
        assert "error:" in done.stderr and "Traceback" not in done.stderr
    assert checkpoint.read_bytes() == b"weights" and link.is_symlink()


# --- round three: trees opened once, entered by descriptor (denoise_cli.trees.dirfd) ---------


def test_an_input_folder_swapped_for_a_link_mid_run_is_not_followed(tmp_path, src):
    from denoise_cli.core.errors import ImageError
    from denoise_cli.trees.plan import open_trees

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0.png").write_bytes((src / "0.png").read_bytes())
    source, _ = open_trees(src, tmp_path / "out")
    assert [f.prefix for f in source.folders()] == ["", "sub/"]
    (src / "sub").rename(tmp_path / "sub.moved")
    (src / "sub").symlink_to(outside)  # after the walk, before the reads
    with pytest.raises(ImageError, match="input folder sub is a symlink"):
        source.read(source.path("sub/0.png"))
    src.rename(tmp_path / "in.moved")  # IN itself swapped for a link to the outside
    (tmp_path / "in").symlink_to(outside)
    assert source.read(source.path("1.png"))[:4] == b"\x89PNG"  # still the IN it opened


def test_out_swapped_for_a_link_mid_run_changes_nothing(tmp_path, src):
    import pickle

    from denoise_cli.core.errors import ImageError
    from denoise_cli.trees.plan import open_trees

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _, target = open_trees(src, out)
    target.open()
    spawned = pickle.loads(pickle.dumps(target))  # what a spawned helper or Ray actor gets
    out.rename(tmp_path / "out.moved")
    out.symlink_to(elsewhere)
    target.write(target.path("sub/a.png"), b"data")  # through the descriptor opened at start
    assert (tmp_path / "out.moved" / "sub" / "a.png").read_bytes() == b"data"
    with pytest.raises(ImageError, match="no longer the folder this run started with"):
        spawned.write(spawned.path("b.png"), b"data")
    assert files_under(elsewhere) == []


def _deep_tree(root: Path, depth: int, image: bytes) -> None:
    """`depth` nested folders made through descriptors (the path passes PATH_MAX on the way
    down in some file systems' eyes), one image at the bottom and one at the top."""
    root.mkdir(parents=True)
    (root / "top.png").write_bytes(image)
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    for i in range(5):
        file = os.open(f"{i}.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.write(file, image)
        os.close(file)
    os.close(fd)


def _remove_deep(root: Path) -> None:
    """shutil.rmtree recurses once per level (pytest's clean-up hit RecursionError)."""
    if not root.exists():
        return
    fds = [os.open(root, os.O_RDONLY)]
    while "d" in os.listdir(fds[-1]):
        fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
    for fd in reversed(fds):
        for name in os.listdir(fd):
            if name == "d":
                os.rmdir(name, dir_fd=fd)  # emptied on the way up
            else:
                os.unlink(name, dir_fd=fd)
        os.close(fd)
    os.rmdir(root)


def test_two_thousand_nested_folders_take_seconds_not_minutes(tmp_path, src):
    import time

    root = tmp_path / "i"
    _deep_tree(root, 2000, (src / "0.png").read_bytes())
    started = time.monotonic()
    try:
        result = run(root, tmp_path / "o", "--workers", "1")
    finally:
        took = time.monotonic() - started
        _remove_deep(root)
        _remove_deep(tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "6 written, 0 failed" in result.output
    assert took < 30, f"{took:.1f} s"  # 92 s before descriptors (510k stat calls)


# --- round three: every file accounted for, bounds before work, no hangs -------------------------


def _many(tmp_path, noisy_digits, n: int) -> Path:
    root = tmp_path / "many"
    for i in range(n):
        save_gray(root / f"{i // 200}" / f"{i:05d}.png", noisy_digits[i % 16])
    return root


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_helper_killed_mid_run_costs_no_file(tmp_path, noisy_digits, sig):
    """SIGTERM to one helper (as a container runtime might) or SIGKILL (the OOM killer): its
    chunk is retried elsewhere; every file is written, the counts add up, exit 0."""
    from tests.helpers import start_cli
    from tests.test_boundary import _wait_for_outputs, children_of

    n = 1200
    src, out, report = _many(tmp_path, noisy_digits, n), tmp_path / "out", tmp_path / "r.json"
    args = [str(src), str(out), "--batch-size", "4", "--workers", "2", "--threads", "1"]
    proc = start_cli([*args, "--report", str(report)])
    _wait_for_outputs(out)
    helpers = children_of(proc.pid)
    assert helpers
    os.kill(helpers[0], sig)
    _, stderr = proc.communicate(timeout=300)
    data = json.loads(report.read_text())
    assert proc.returncode == 0, stderr
    assert (data["written"], data["failed"], data["unfinished"]) == (n, 0, 0)
    assert len(files_under(out)) == n


def test_a_helper_killed_mid_write_leaves_no_temporary_file(tmp_path, src):
    """SIGKILL cannot be caught: a helper killed between creating its temporary file and the
    rename leaves it behind. The parent removes it as soon as it learns of the death (not at
    the next run), and only a dead writer's: a live writer's temporary file stays. What the
    helper had written of its chunk counts as written; the rest goes again."""
    from types import SimpleNamespace

    from denoise_cli.core.atomic import temporary_name
    from denoise_cli.run.pool import Assignment, HelperPool
    from denoise_cli.trees.plan import open_trees
    from denoise_cli.trees.walk import FileJob

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    _, target = open_trees(src, tmp_path / "out")
    target.open()
    folder = tmp_path / "out" / "a"
    folder.mkdir()
    left = folder / temporary_name("1.png", dead.pid)
    live = folder / temporary_name("2.png")
    for path in (left, live):
        path.write_bytes(b"half a png")
    (folder / "0.png").write_bytes(b"written whole before the kill")
    files = [
        FileJob(str(src / f"{i}.png"), f"a/{i}.png", target.path(f"a/{i}.png")) for i in range(3)
    ]
    outcomes = []
    run = SimpleNamespace(
        target=target,
        job=SimpleNamespace(overwrite=False),
        recorder=SimpleNamespace(outcome=outcomes.append),
    )
    helper = SimpleNamespace(
        queue=[Assignment(list(files))], process=SimpleNamespace(exitcode=-signal.SIGKILL)
    )
    HelperPool(run, 1, "spawn")._salvage(helper)
    assert not left.exists()
    assert live.exists()
    assert [(o.rel, o.error) for o in outcomes] == [("a/0.png", None)]
    assert [f.rel for f in helper.queue[0].files] == ["a/1.png", "a/2.png"]

    left.write_bytes(b"half a png")
    helper.process.exitcode = 0  # a helper that left cleanly wrote nothing half
    HelperPool(run, 1, "spawn")._salvage(helper)
    assert left.exists()
    run.job.overwrite, helper.process.exitcode = True, -signal.SIGKILL
    helper.queue = [Assignment(list(files))]
    HelperPool(run, 1, "spawn")._salvage(helper)  # the output on disk may be the old one
    assert not left.exists() and len(outcomes) == 1 and len(helper.queue[0].files) == 3


def test_a_process_ending_at_once_mid_write_removes_its_temporary_file(tmp_path):
    """An orphaned helper ends inside its SIGTERM handler (it may be stuck in a model call);
    remove_in_flight, which it calls first, takes the file it was writing with it."""
    from denoise_cli.core.atomic import TMP_SUFFIX, remove_in_flight, write_atomic

    seen = []

    def pieces():
        yield b"half"
        seen.extend(p.name for p in tmp_path.iterdir())
        remove_in_flight()  # what the handler does, then os._exit(0)
        seen.append([p.name for p in tmp_path.iterdir()])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(pieces(), tmp_path / "0.png")
    assert len(seen) == 2 and seen[0].endswith(TMP_SUFFIX) and seen[1] == []
    assert list(tmp_path.iterdir()) == []
    remove_in_flight()  # nothing in flight: nothing happens


def test_a_lost_actors_outputs_in_a_store_are_seen_as_written(tmp_path):
    """Planning lists a store's output tree once; the Ray runner's retry after a lost actor
    asks again, so files the actor wrote before it died count as written, and only the rest
    goes to another actor."""
    pytest.importorskip("pyarrow")
    from types import SimpleNamespace

    from denoise_cli.run.ray_runner import _Dispatch
    from denoise_cli.trees.plan import StorageTarget
    from denoise_cli.trees.storage import Storage

    target = StorageTarget(Storage("mock:///out"))  # pyarrow's in-memory store
    assert target.existing("a/") == set()  # the plan's listing: nothing yet
    target.write(target.path("a/0.png"), b"written by the actor that died")
    rows = [
        ("in/0.png", "a/0.png", target.path("a/0.png")),
        ("in/1.png", "a/1.png", target.path("a/1.png")),
    ]
    outcomes = []
    run = SimpleNamespace(
        target=target,
        workers=1,
        job=SimpleNamespace(overwrite=False),
        recorder=SimpleNamespace(outcome=outcomes.append),
        stop=lambda: False,
    )
    dispatch = _Dispatch(None, run, None)
    dispatch._retry(rows, 1)
    assert [(o.rel, o.error) for o in outcomes] == [("a/0.png", None)]
    assert list(dispatch.waiting) == [(rows[1:], 1)]
    assert target.existing("a/") == set()  # the plan's own listing is kept


def test_a_file_larger_than_any_image_can_be_is_refused_unread(tmp_path, src):
    huge = src / "000.png"
    with open(huge, "wb") as f:
        f.truncate(30 << 30)  # 30 GB, sparse: it would be read whole before
    report = tmp_path / "r.json"
    result = run(src, tmp_path / "out", "--report", report, "--workers", "1")
    assert result.exit_code == 1, result.output
    failures = json.loads(report.read_text())["failures"]
    assert [f["file"] for f in failures] == ["000.png"]
    assert "more than any image within the pixel limit can take" in failures[0]["error"]
    assert len(files_under(tmp_path / "out")) == 8


def _metadata_model(path: Path, **metadata: str) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    _model(path, [helper.make_node("Identity", ["x"], ["y"])])
    model = onnx.load(str(path))
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("key", ["size_multiple", "min_side_as_is", "native_size"])
def test_model_metadata_out_of_range_is_refused(tmp_path, src, key):
    model = _metadata_model(tmp_path / "m.onnx", **{key: "6000"})
    result = run(src, tmp_path / "out", "--model", model)
    assert result.exit_code == 3, result.output
    assert f"metadata {key}=6000 is out of range" in result.output


@pytest.mark.parametrize(("schema", "error"), [("", "'' is not a version"), ("2", "2 is newer")])
def test_a_model_schema_that_is_no_version_is_not_called_newer(tmp_path, src, schema, error):
    model = _metadata_model(tmp_path / "m.onnx", **{"denoise_batch.schema": schema})
    result = run(src, tmp_path / "out", "--model", model)
    assert result.exit_code == 3, result.output
    assert error in result.output


def test_min_side_as_is_never_scales_an_image_down_into_the_model(tmp_path):
    """A model that says `min_side_as_is` 500 (in range) and is native at 28: a 40x40 image
    goes through it as it is (identity: unchanged), not shrunk to 28 px and blown back up (it
    recursed until Python's stack ran out before)."""
    model = _metadata_model(tmp_path / "m.onnx", min_side_as_is="500", native_size="28x28")
    rng = np.random.default_rng(0)
    image = save_gray(tmp_path / "in" / "a.png", rng.random((40, 40)))
    result = run(tmp_path / "in", tmp_path / "out", "--model", model)
    assert result.exit_code == 0, result.output
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "out" / "a.png")), np.asarray(Image.open(image))
    )


def test_a_model_with_a_string_output_is_refused_in_one_line(tmp_path, src):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, ["n", 1, "h", "w"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "s.onnx"))
    result = run(src, tmp_path / "out", "--model", tmp_path / "s.onnx")
    assert result.exit_code == 3, result.output
    assert "output type tensor(string), needs float" in result.output
    assert "Traceback" not in result.output


def _endless_model(path: Path) -> Path:
    """y = x carried through a Loop of 10^12 iterations: a model call that never returns."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None),
        ],
    )
    inits = [
        numpy_helper.from_array(np.array(10**12, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "cond"),
    ]
    return _model(path, [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)], inits)


def _endless_above_28(path: Path) -> Path:
    """Identity for 28-row images (the load check's), a Loop of (H - 28) * 10^12 iterations
    for taller ones: a model that hangs only on real files."""
    _endless_model(path)
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(2, np.int64), "two"),
            numpy_helper.from_array(np.array(28, np.int64), "side"),
            numpy_helper.from_array(np.array(10**12, np.int64), "big"),
        ]
    )
    loop = graph.node.pop()
    graph.node.extend(
        [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Gather", ["shape", "two"], ["h"]),
            helper.make_node("Sub", ["h", "side"], ["extra"]),
            helper.make_node("Mul", ["extra", "big"], ["many"]),
        ]
    )
    loop.input[0] = "many"
    graph.node.append(loop)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_call_that_overruns_fails_its_files_and_the_rest_are_written(
    tmp_path, src, workers
):
    """In this process or in a helper (which then makes way for a new one)."""
    model = _endless_above_28(tmp_path / "tall.onnx")
    save_gray(src / "tall.png", np.zeros((40, 28), np.float32))
    report = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "denoise_cli.cli", str(src), str(tmp_path / "out"), "--model",
         str(model), "--model-timeout", "2", "--workers", workers, "--batch-size", "2",
         "--report", str(report)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    data = json.loads(report.read_text())
    assert (data["written"], data["failed"], data["unfinished"]) == (8, 1, 0)
    assert data["failures"][0]["file"] == "tall.png"
    assert "model call took over 2 s" in data["failures"][0]["error"]


@pytest.mark.parametrize("short_in", ["stack", "clip"])
def test_running_out_of_memory_on_a_batch_fails_its_files_and_the_rest_are_written(
    tmp_path, src, monkeypatch, short_in
):
    """Stacking a batch before the model, and clipping it after, ran outside the per-file
    handling: a MemoryError stopped the run with a traceback, no summary and no report."""
    from denoise_cli.run import chunk

    class ShortOfMemory:
        def __getattr__(self, name):
            return getattr(np, name)

        def stack(self, arrays, *args, **kwargs):
            if short_in == "stack" and arrays[0].shape == (40, 52):
                raise MemoryError("Unable to allocate 34.3 MiB for an array")
            return np.stack(arrays, *args, **kwargs)

        def clip(self, a, *args, **kwargs):
            if short_in == "clip" and a.shape[1:] == (40, 52):
                raise MemoryError("Unable to allocate 34.3 MiB for an array")
            return np.clip(a, *args, **kwargs)

    monkeypatch.setattr(chunk, "np", ShortOfMemory())
    for name in ("big.png", "big2.png"):
        save_gray(src / name, np.zeros((40, 52), np.float32))
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        app, [str(src), str(tmp_path / "out"), "--workers", "1", "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    data = json.loads(report.read_text())
    assert (data["written"], data["failed"]) == (8, 2)
    for failure in data["failures"]:
        assert failure["file"] in ("big.png", "big2.png") and "\n" not in failure["error"]
        assert failure["error"].startswith("out of memory (Unable to allocate 34.3 MiB")
        assert failure["error"].endswith(": lower --tile or --workers")
    assert not (tmp_path / "out" / "big.png").exists()


def test_model_failures_are_one_line_that_keeps_the_reason():
    from denoise_cli.run.chunk import model_failure

    arena = RuntimeError(
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
        "running Conv node. Name:'node_Conv_183' Status Message: /onnxruntime/core/framework/"
        "bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, "
        "onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate "
        "memory for requested buffer of size 603979776\n"
    )
    said = model_failure(arena)
    assert said.startswith("out of memory (Failed to allocate memory for requested buffer")
    assert "603979776" in said and said.endswith(": lower --tile or --workers")
    cuda = model_failure(RuntimeError("CUDA failure 2: out of memory ; GPU=0"), "lower --tile")
    assert cuda.startswith("out of memory (out of memory") and cuda.endswith(": lower --tile")
    long = model_failure(RuntimeError("x" * 600 + "\n Invalid input shape: {1,1,3}"))
    assert long.startswith("model failed: xxx") and long.endswith("Invalid input shape: {1,1,3}")
    assert "\n" not in long and len(long) < 420


def test_a_model_call_that_never_returns_fails_its_files_at_the_timeout(tmp_path, src):
    import time

    model = _endless_model(tmp_path / "endless.onnx")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "denoise_cli.cli", str(src / "0.png"), str(tmp_path / "out"),
         "--model", str(model), "--model-timeout", "2", "--workers", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert proc.returncode == 3, proc.stderr  # loading runs the model once: refused there
    assert "did not finish its load check within 2 s" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_stops_a_run_whose_model_never_returns(tmp_path, noisy_digits, sig, code):
    """A signal while the model is in flight: the run stops within seconds, with a report
    (onnxruntime cannot be interrupted: the call is left in its thread, helpers are killed)."""
    import time

    from tests.helpers import start_cli

    src = _many(tmp_path, noisy_digits, 40)
    model = _endless_model(tmp_path / "endless.onnx")
    report = tmp_path / "r.json"
    proc = start_cli([str(src), str(tmp_path / "out"), "--model", str(model),
                      "--report", str(report), "--batch-size", "4"])  # fmt: skip
    time.sleep(8)  # loading, then stuck in the model (the load check runs it too)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert json.loads(report.read_text())["interrupted"] is True


def test_a_closed_stderr_does_not_stop_the_run(tmp_path, src):
    out = tmp_path / "out"
    proc = subprocess.run(
        f"{sys.executable} -m denoise_cli.cli {src} {out} 2>&-",
        shell=True, capture_output=False, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0
    assert len(files_under(out)) == 8


def test_noisify_with_a_poisson_peak_too_large_is_a_usage_error(tmp_path, src):
    result = run("noisify", src, tmp_path / "out", "--noise", "poisson", "--level", "1e30")
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out").exists()


def test_a_zero_by_zero_image_through_the_api_is_a_clear_error():
    from denoise_cli.core.errors import UsageError
    from denoise_cli.model.session import Denoiser

    with pytest.raises(UsageError, match="no pixels"):
        Denoiser().denoise([np.zeros((0, 0), np.float32)])


def test_a_decoder_warning_does_not_reach_stderr_raw(tmp_path, src):
    """Pillow warns "Invalid APNG" (an acTL chunk of 0 frames) and decodes the still image."""
    import io
    import struct

    from denoise_cli.files.fastpng import chunk

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    after_header = 8 + 8 + 13 + 4
    actl = chunk(b"acTL", struct.pack(">II", 0, 0))
    (src / "apng.png").write_bytes(data[:after_header] + actl + data[after_header:])
    proc = subprocess.run(
        [sys.executable, "-m", "denoise_cli.cli", str(src), str(tmp_path / "out"), "-q"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "APNG" not in proc.stderr
    assert (tmp_path / "out" / "apng.png").is_file()
