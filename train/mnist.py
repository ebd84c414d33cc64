"""MNIST: where the files live, downloading them safely, and loading them as float arrays.

Data folder, first match wins: an explicit `data_dir` (the CLI's --data-dir), then the
DENOISE_MNIST_DIR environment variable, then a per-user cache folder
($XDG_CACHE_HOME or ~/.cache)/denoise-batch/mnist.

Downloads are checked against the SHA-256 digests of the upstream archives and written
atomically (temporary file + rename), so an interrupted download never leaves a file that a later
run would trust. Files already on disk may be recompressed copies whose archive bytes differ from
upstream, so they are checked by content instead: the IDX structure always, and the SHA-256 of the
decompressed payload whenever a file claims the full MNIST size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denoise_cli.core.errors import RefusedError
from denoise_train.idx import IdxError, _read_bytes, parse_idx

ENV_VAR = "DENOISE_MNIST_DIR"

#: Mirrors tried in order (the same ones torchvision uses).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class MnistFile:
    name: str
    archive_sha256: str  # of the upstream .gz archive, checked on download
    content_sha256: str  # of the decompressed IDX bytes, checked on every full-size load
    count: int


FILES: dict[tuple[str, str], MnistFile] = {
    ("train", "images"): MnistFile(
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        60_000,
    ),
    ("train", "labels"): MnistFile(
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        60_000,
    ),
    ("test", "images"): MnistFile(
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        10_000,
    ),
    ("test", "labels"): MnistFile(
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        10_000,
    ),
}


class MnistError(RefusedError):
    """MNIST could not be found, downloaded or validated; the message says what to do."""


def default_data_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "denoise-batch" / "mnist"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """--data-dir, then $DENOISE_MNIST_DIR, then the per-user cache folder."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_data_dir()


def _find(data_dir: Path, spec: MnistFile) -> Path | None:
    """The file as shipped (.gz) or already decompressed (no suffix)."""
    for candidate in (data_dir / spec.name, data_dir / spec.name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def download_file(
    url: str, dest: Path, sha256: str, timeout: float = 30.0, chunk: int = 1 << 16
) -> Path:
    """Fetch `url` into `dest` atomically, refusing a digest mismatch; return `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            expected_len = resp.headers.get("Content-Length")
            received = 0
            while block := resp.read(chunk):
                out.write(block)
                digest.update(block)
                received += len(block)
        if expected_len is not None and received != int(expected_len):
            raise MnistError(
                f"{url}: download interrupted ({received} of {expected_len} bytes received)"
            )
        if digest.hexdigest() != sha256:
            raise MnistError(
                f"{url}: SHA-256 mismatch (got {digest.hexdigest()}, expected {sha256}); "
                "the mirror served a different or damaged file"
            )
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared cache unreadable to others
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def ensure_files(
    data_dir: Path, mirrors: Sequence[str] = MIRRORS, download: bool = True
) -> dict[tuple[str, str], Path]:
    """Locate the four MNIST files, downloading any that are missing. A failed download
    removes the folders it created (a mistyped folder name is not left behind)."""
    created = [p for p in (data_dir, *data_dir.parents) if not p.exists()]
    found: dict[tuple[str, str], Path] = {}
    try:
        for key, spec in FILES.items():
            path = _find(data_dir, spec)
            if path is None:
                if not download:
                    raise MnistError(f"{data_dir / spec.name}: missing and downloading is disabled")
                path = _download_from_mirrors(data_dir / spec.name, spec, mirrors)
            found[key] = path
    except MnistError:
        for folder in created:  # innermost first; one holding a file stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return found


def _download_from_mirrors(dest: Path, spec: MnistFile, mirrors: Sequence[str]) -> Path:
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.name
        try:
            return download_file(url, dest, spec.archive_sha256)
        except (urllib.error.URLError, OSError, MnistError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise MnistError(
        f"could not download {spec.name} into {dest.parent} (offline?). Tried: "
        + "; ".join(errors)
        + f". Copy the MNIST .gz files there, or point --data-dir / ${ENV_VAR} at them."
    )


def _load_checked(path: Path, spec: MnistFile, expect_ndim: int) -> np.ndarray:
    data = _read_bytes(path)
    array = parse_idx(data, str(path))
    if array.ndim != expect_ndim or array.dtype != np.uint8:
        raise IdxError(
            f"{path}: expected a {expect_ndim}-d uint8 array, got {array.ndim}-d {array.dtype}"
        )
    if expect_ndim == 3 and array.shape[1:] != (28, 28):
        raise IdxError(f"{path}: expected 28x28 images, got {array.shape[1]}x{array.shape[2]}")
    if len(array) == spec.count and hashlib.sha256(data).hexdigest() != spec.content_sha256:
        raise IdxError(f"{path}: content differs from the MNIST release (SHA-256 mismatch)")
    return array


def load_split(
    split: str, data_dir: str | Path | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 (N, 1, 28, 28) in [0, 1] and labels as int64 (N,)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = resolve_data_dir(data_dir)
    paths = ensure_files(root, download=download)
    images = _load_checked(paths[(split, "images")], FILES[(split, "images")], 3)
    labels = _load_checked(paths[(split, "labels")], FILES[(split, "labels")], 1)
    if len(images) != len(labels):
        raise IdxError(
            f"{paths[(split, 'images')]}: {len(images)} images but "
            f"{paths[(split, 'labels')].name} has {len(labels)} labels"
        )
    return (images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64)
