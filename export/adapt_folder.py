"""A user's folder of images, read the way `denoise-batch` reads it (its own decoders), for
training: gray float images in [0, 1], brought to the model's polarity, with the folder's digest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denoise_cli.core.errors import ImageError, UsageError
from denoise_cli.core.safety import inside
from denoise_cli.files.images import IMAGE_EXTENSIONS, decode, is_image_name
from denoise_cli.model.polarity import needs_inversion
from denoise_cli.trees.walk import broken_link


class FolderError(UsageError):
    """A folder that cannot be trained on: missing, empty, unreadable, images too small."""


@dataclass
class ImageFolder:
    """The images of one folder (any sizes), in the model's polarity, and what they came from."""

    root: Path
    names: list[str]  # relative to root, sorted
    images: list[np.ndarray]  # (H, W) float32 in [0, 1]
    flipped: list[bool]  # which were inverted to the model's polarity
    skipped: list[str]  # "name: reason" for files that could not be decoded
    digest: str  # SHA-256 over the names and bytes of the files read

    @property
    def inverted(self) -> int:
        return sum(self.flipped)

    def originals(self) -> list[np.ndarray]:
        """The images as they are in the files (the noise is physical there)."""
        return [1.0 - im if f else im for im, f in zip(self.images, self.flipped, strict=True)]


def check_folder(root: Path) -> None:
    """Raise FolderError unless `root` is a folder: before any work, not after the base model
    was loaded and the noisy folder read (a mistyped clean folder was found only then)."""
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder")


def image_paths(root: Path) -> list[Path]:
    """Every image file under `root` (recursively, hidden files left out), sorted. Symlinks
    are followed only to files inside the tree, as denoise-batch does: a folder's link to a
    file elsewhere is not one of its images."""
    check_folder(root)
    real_root, paths, unlisted = os.path.realpath(root), [], []
    for folder, dirs, files in os.walk(root, onerror=unlisted.append):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(folder) / name
            if not is_image_name(name) or name.startswith("."):
                continue
            outside = path.is_symlink() and not inside(os.path.realpath(path), real_root)
            if outside and broken_link(path) is None:
                continue  # a broken link is listed (read_folder says why), wherever it points
            paths.append(path)
    if unlisted and not paths:  # a folder it may not read said "no images in this folder"
        exc = unlisted[0]
        raise FolderError(f"{exc.filename}: cannot list this folder: {exc.strerror}")
    return sorted(paths)


def read_folder(
    root: Path,
    polarity: str = "unknown",
    max_images: int | None = None,
    min_side: int = 1,
    bilevel: bool = True,
) -> ImageFolder:
    """Read up to `max_images` images (evenly spread over the sorted names) from `root`.

    Raises FolderError when no image could be read; undecodable files, broken links and
    images under `min_side` pixels on a side (an 8x8 scan among pages would shrink every
    training crop to nothing) are listed in `skipped`, and 1-bit images unless `bilevel` (noisy
    folders: black and white pixels hold no grey noise, and a few of them skew its estimate).
    """
    root = Path(root)
    paths = image_paths(root)
    if not paths:
        raise FolderError(
            f"{root}: no images in this folder (read by extension: "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    if max_images is not None and len(paths) > max_images:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, max_images).round().astype(int)]
    digest = hashlib.sha256()
    names, images, skipped, flipped = [], [], [], []
    for path in paths:
        name = path.relative_to(root).as_posix()
        try:
            gray, info = decode(path)
            digest.update(name.encode() + b"\0" + path.read_bytes())
        except (ImageError, OSError) as exc:  # a broken link read as "file vanished"
            skipped.append(f"{name}: {broken_link(path) or exc}")
            continue
        if not bilevel and info.out_mode == "1":  # 3 of 43 skewed the noise estimate: -1.3 dB
            skipped.append(f"{name}: 1-bit (black and white): no grey levels to learn noise from")
            continue
        if min(gray.shape) < min_side:
            height, width = gray.shape
            skipped.append(f"{name}: {width}x{height}, under {min_side} px on a side to train on")
            continue
        flipped.append(needs_inversion(gray, "auto", polarity))
        if flipped[-1]:
            gray = 1.0 - gray
        names.append(name)
        images.append(np.ascontiguousarray(gray, dtype=np.float32))
    if not images:
        raise FolderError(
            f"{root}: none of its {len(paths)} image files could be used ({skipped[0]})"
        )
    return ImageFolder(root, names, images, flipped, skipped, digest.hexdigest())


def crop_side(images: list[np.ndarray], largest: int, multiple: int, smallest: int = 16) -> int:
    """The training crop: `largest`, or less when the smallest image is smaller (a multiple of
    `multiple`, the model's size_multiple). Raises FolderError below `smallest`."""
    side = min(largest, min(min(im.shape) for im in images))
    side -= side % multiple
    if side < smallest:
        small = min(min(im.shape) for im in images)
        raise FolderError(
            f"images too small to train on: the smallest is {small} px on a side, "
            f"at least {smallest} px needed"
        )
    return side


def random_crops(
    images: list[np.ndarray], count: int, side: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` random `side` x `side` crops (random images, positions, flips): (count, 1, s, s)."""
    out = np.empty((count, 1, side, side), np.float32)
    picks = rng.integers(0, len(images), count)
    for i, k in enumerate(picks):
        im = images[k]
        y = rng.integers(0, im.shape[0] - side + 1)
        x = rng.integers(0, im.shape[1] - side + 1)
        crop = im[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i, 0] = crop
    return out


def center_crops(images: list[np.ndarray], side: int) -> np.ndarray:
    """One centred `side` x `side` crop per image: (N, 1, side, side), for fixed validation."""
    out = np.empty((len(images), 1, side, side), np.float32)
    for i, im in enumerate(images):
        y, x = (im.shape[0] - side) // 2, (im.shape[1] - side) // 2
        out[i, 0] = im[y : y + side, x : x + side]
    return out
