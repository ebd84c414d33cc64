"""Helpers shared by the tests: real digit images, synthetic IDX data, image I/O."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "denoise_cli" / "samples"


def mnist_dir() -> Path:
    """The real MNIST files: $DENOISE_MNIST_DIR, else ../shared/data/mnist beside the checkout."""
    return Path(os.environ.get("DENOISE_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))


def save_gray(path: Path, img: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path, **kwargs)
    return path


def load_gray(path: Path) -> np.ndarray:
    """Any image file as float gray in [0, 1], 16-bit included (the runtime's own decoder)."""
    from denoise_cli.files.images import decode

    return decode(path)[0]


def synthetic_digits(n: int, seed: int = 0) -> np.ndarray:
    """Digit-like uint8 images (strokes on black), for IDX files that train and test quickly."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        im = Image.new("L", (28, 28), 0)
        draw = ImageDraw.Draw(im)
        for _ in range(rng.integers(1, 4)):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(4, 24, size=4))
            draw.line((x0, y0, x1, y1), fill=255, width=int(rng.integers(2, 4)))
        out[i] = np.asarray(im)
    return out


def write_idx_set(folder: Path, n_train: int = 600, n_test: int = 100, seed: int = 0) -> Path:
    """The four MNIST file names, gzipped, holding synthetic digits."""
    from denoise_train.idx import encode_idx

    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        images = synthetic_digits(n, s)
        labels = np.arange(n, dtype=np.uint8) % 10
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(encode_idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
    return folder


class CrashingTransform:
    """Identity, except that a worker process (never the test's own: any process but
    `driver_pid`, a pool helper or a Ray actor) dies on a 'crash' file."""

    fork_safe = False  # spawned helpers: the crash must not depend on a fork

    def __init__(self, driver_pid: int) -> None:
        self.driver_pid = driver_pid

    def describe(self) -> dict:
        return {"transform": "crashing identity"}

    def batch_limit(self, height: int, width: int) -> int:
        return 64

    def streams(self, height: int, width: int) -> bool:
        return False

    def __call__(self, images, jobs):
        if os.getpid() != self.driver_pid and any("crash" in j.rel for j in jobs):
            os._exit(3)  # what a segfaulting decoder looks like from outside
        return images


@dataclass(frozen=True)
class Crashing:
    """A Job's transform description that builds a CrashingTransform in every worker."""

    driver_pid: int = field(default_factory=os.getpid)

    def build(self, threads: int | None) -> CrashingTransform:
        return CrashingTransform(self.driver_pid)

    def placed(self) -> Crashing:
        return self

    def describe_model(self) -> dict:
        return CrashingTransform(self.driver_pid).describe()


@dataclass(frozen=True)
class FailsInHelpers:
    """A transform description that builds (an identity) in the driver and fails to build in
    every other process: a helper that cannot load what the parent loaded."""

    driver_pid: int = field(default_factory=os.getpid)

    def build(self, threads: int | None) -> CrashingTransform:
        if os.getpid() != self.driver_pid:
            raise RuntimeError("out of memory\nsecond line of the reason")
        return SlowIdentity(self.driver_pid)

    def forks_early(self) -> bool:
        return True

    def placed(self) -> FailsInHelpers:
        return self


class SlowIdentity(CrashingTransform):
    """Identity taking 50 ms a call, forked: the driver stays busy while helpers restart."""

    fork_safe = True

    def __call__(self, images, jobs):
        time.sleep(0.05)
        return images


class OneAtATime(CrashingTransform):
    """Identity on one image a call, `seconds` a call: a stop lands between files."""

    def __init__(self, driver_pid: int, seconds: float) -> None:
        super().__init__(driver_pid)
        self.seconds = seconds

    def batch_limit(self, height: int, width: int) -> int:
        return 1

    def __call__(self, images, jobs):
        time.sleep(self.seconds)
        return images


@dataclass(frozen=True)
class Slow:
    """A Job's transform description: OneAtATime in every worker."""

    seconds: float = 0.2
    driver_pid: int = field(default_factory=os.getpid)

    def build(self, threads: int | None) -> OneAtATime:
        return OneAtATime(self.driver_pid, self.seconds)

    def placed(self) -> Slow:
        return self

    def describe_model(self) -> dict:
        return {"transform": "slow identity"}


class StuckAfterOne(OneAtATime):
    """In a worker process: the first file goes through; before the second, a temporary file
    is left in `out` as if mid-write, and the worker blocks `hold` s outside the model watchdog
    (a slow read or upload): only a kill ends it."""

    def __init__(self, driver_pid: int, out: str, hold: float) -> None:
        super().__init__(driver_pid, 0.0)
        self.out, self.hold, self.calls = out, hold, 0

    def batch_limit(self, height: int, width: int) -> int:
        if os.getpid() != self.driver_pid:
            self.calls += 1
            if self.calls == 2:
                from denoise_cli.core.atomic import temporary_name

                name = temporary_name(f"in-flight-{os.getpid()}.png")
                Path(self.out, name).write_bytes(b"half a file")
                time.sleep(self.hold)
        return 1


@dataclass(frozen=True)
class BlocksAfterOne:
    """A Job's transform description: StuckAfterOne in every worker."""

    out: str
    hold: float = 60.0
    driver_pid: int = field(default_factory=os.getpid)

    def build(self, threads: int | None) -> StuckAfterOne:
        return StuckAfterOne(self.driver_pid, self.out, self.hold)

    def placed(self) -> BlocksAfterOne:
        return self

    def describe_model(self) -> dict:
        return {"transform": "identity that blocks"}


class Boom(BaseException):
    """What no per-file handler catches: the whole call raises."""


class RaisingTransform(OneAtATime):
    """OneAtATime, except that a worker process raises Boom on a 'boom' file."""

    def __call__(self, images, jobs):
        if os.getpid() != self.driver_pid and any("boom" in j.rel for j in jobs):
            raise Boom("the decoder blew up")
        return super().__call__(images, jobs)


@dataclass(frozen=True)
class RaisesInWorkers(Slow):
    """A Job's transform description: RaisingTransform in every worker."""

    def build(self, threads: int | None) -> RaisingTransform:
        return RaisingTransform(self.driver_pid, self.seconds)


def tree_hash(root: Path) -> dict[str, str]:
    """Every entry under `root` (not following links): file hashes, link targets, folders.
    Equal before and after a run means the tree was not touched."""
    import hashlib

    entries: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            entries[rel] = "link -> " + os.readlink(path)
        elif path.is_file():
            entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[rel] = "dir" if path.is_dir() else "other"
    return entries


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(args: list[str]) -> subprocess.Popen:
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


def identity_model(path: Path) -> Path:
    """An ONNX 'denoiser' that returns its input, with the metadata the runtime reads."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["noisy"], ["denoised"])],
        "identity",
        [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, ["n", 1, "h", "w"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in {"polarity": "light-on-dark", "architecture": "identity"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def assert_exports_with_dynamic_sizes(model, tolerance: float = 1e-5) -> None:
    """Export a fully convolutional model (size multiple 4) and check onnxruntime against
    PyTorch on several batch sizes and image sizes."""
    import onnxruntime as ort
    import torch

    from denoise_export.onnx_export import export_model

    model = model.eval()
    proto = export_model(model, True, size_multiple=4)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in [(1, 1, 28, 28), (3, 1, 36, 52), (1, 1, 100, 60)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            want = model(x).numpy()
        (got,) = session.run(None, {"noisy": x.numpy()})
        assert got.shape == shape and np.abs(got - want).max() < tolerance


def tiny_world_config(arch: str, **fields):
    """A TrainConfig for a few seconds of --data world training (3 steps of 4 canvases of
    32x32, mixed noise): enough for a checkpoint with the world's config, not for quality."""
    from denoise_train.config import TrainConfig

    settings = dict(epochs=1, batch_size=4, val_size=50, threads=1, data="world")
    settings |= dict(noise="mixed", scene_size=32, steps_per_epoch=3)
    return TrainConfig(arch=arch, **(settings | fields))
