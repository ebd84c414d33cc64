"""The model: one onnxruntime session, the provider that really loaded, and inference on arrays.

`Denoiser` is the Python API under the CLI: give it float images in [0, 1] of any size and it
returns denoised ones, handling polarity, fixed-shape models and tiling of large images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.errors import ImageError, ModelError, ProviderError, UsageError
from denoise_cli.model.bundled import model_file_problem, resolve_model
from denoise_cli.model.info import SUPPORTED_SCHEMA_MAJOR, ModelInfo
from denoise_cli.model.placement import (
    Placement,
    check_device_name,
    import_onnxruntime,
    place,
    precision_file,
    provider_options,
    session_options,
)
from denoise_cli.model.polarity import INVERT_CHOICES, needs_inversion_batch, sampled
from denoise_cli.model.scale import LEAVE_BELOW, RESAMPLE_BELOW, resample
from denoise_cli.model.tiling import (
    balanced_tile,
    border_width,
    bordered,
    cropped_bands,
    mirrored_rows,
    tiled_rows,
)


def inspect_session(session: Any, path: Path) -> ModelInfo:
    """The model's metadata and I/O, checked: ModelError for what denoise-batch cannot run."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    meta = dict(session.get_modelmeta().custom_metadata_map)
    schema = meta.get("denoise_batch.schema", str(SUPPORTED_SCHEMA_MAJOR))
    major = schema.split(".")[0]
    if not major.isdigit():
        raise ModelError(f"{path}: metadata denoise_batch.schema {schema!r} is not a version")
    if int(major) > SUPPORTED_SCHEMA_MAJOR:
        raise ModelError(f"{path}: metadata schema {schema} is newer than this denoise-batch")
    if len(inputs) != 1 or not outputs:
        raise ModelError(
            f"{path}: incompatible model: needs exactly 1 input and 1 output, "
            f"has {len(inputs)} and {len(outputs)}"
        )
    shape = tuple(inputs[0].shape)
    if inputs[0].type != "tensor(float)":
        raise ModelError(f"{path}: incompatible model: input type {inputs[0].type}, needs float32")
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 1):
        raise ModelError(
            f"{path}: incompatible model: input shape {list(shape)}, denoise-batch needs "
            "(N, 1, H, W) grayscale images"
        )
    if meta.get("value_range", "0..1") != "0..1":
        raise ModelError(f"{path}: unsupported value range {meta['value_range']} (needs 0..1)")
    if outputs[0].type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
        kind = outputs[0].type
        raise ModelError(f"{path}: incompatible model: output type {kind}, needs float")
    info = ModelInfo(str(path), meta, inputs[0].name, shape, outputs[0].name)
    if (problem := info.out_of_range()) is not None:  # metadata is input too
        raise ModelError(f"{path}: {problem}")
    return info


def load_session(path: Path, providers: Sequence[str], threads: int | None) -> Any:
    """An onnxruntime session of `path` on `providers` (best first), with the run's options;
    ModelError, naming the file, for anything onnxruntime cannot load."""
    ort = import_onnxruntime()
    options = [(p, provider_options(p, threads)) for p in providers]
    try:
        return ort.InferenceSession(str(path), session_options(ort, threads), providers=options)
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a loadable ONNX/ORT model ({reason[:300]})") from None


def check_runs(session: Any, info: ModelInfo) -> None:
    """One tiny inference, so an image-to-image mismatch fails before any file is read."""
    h, w = info.fixed_size or (28, 28)
    x = np.zeros((info.fixed_batch or 1, 1, h, w), dtype=np.float32)
    try:
        y = session.run([info.output_name], {info.input_name: x})[0]
    except Exception as exc:
        raise ModelError(f"{info.path}: model fails on a {h}x{w} image ({exc})") from None
    if y.shape != x.shape:
        raise ModelError(
            f"{info.path}: incompatible model: output shape {list(y.shape)} for input "
            f"{list(x.shape)}; denoise-batch needs an image-to-image model"
        )


def check_model_here(
    model: str | Path | None, device: str = "auto", precision: str = "auto"
) -> ModelInfo:
    """Everything about a model that needs no device, checked on this machine's CPU: the file,
    its INT8 file when asked for, a device name that could exist somewhere, its metadata and
    one tiny run. For a driver whose work runs elsewhere (Ray actors place on their own node):
    a bad model or setting is refused here, before any actor starts."""
    path = resolve_model(model)
    if problem := model_file_problem(path, model):
        raise ModelError(problem)
    check_device_name(device)
    chosen = precision_file(path, precision, "")  # auto: the file itself; int8: must exist
    session = load_session(chosen, ["CPUExecutionProvider"], threads=None)
    info = inspect_session(session, chosen)
    check_runs(session, info)
    return info


#: More onnxruntime threads than any machine has cores: 10**6 reserved ~41 GB of stacks.
MAX_THREADS = 1024
#: Tile sides: under 32 a tile is mostly overlap; over 4096 only memory grows (about 250
#: bytes a pixel for the default: 4.2 GB at 4096, and a 4096 tile ran slower than 2048's).
MIN_TILE, MAX_TILE = 32, 4096


def _whole(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_tile(tile: object) -> None:
    """Refuse a tile side that is not a whole number of pixels in MIN_TILE..MAX_TILE."""
    if not (_whole(tile) and MIN_TILE <= tile <= MAX_TILE):  # type: ignore[operator]
        raise UsageError(f"tile must be a whole number {MIN_TILE}-{MAX_TILE} pixels, got {tile!r}")


def check_settings(
    device: object, threads: object, tile: object, overlap: object, max_batch_pixels: object
) -> None:
    """A Denoiser's settings, each refused by name (a string thread count used to surface
    as "not a loadable model", a million threads hung, tile 0 ran)."""
    if not isinstance(device, str):
        raise UsageError(f"device must be a name ('auto', 'cpu', 'cuda'...), got {device!r}")
    if threads is not None and not (_whole(threads) and 1 <= threads <= MAX_THREADS):  # type: ignore[operator]
        raise UsageError(f"threads must be None or a whole number 1-{MAX_THREADS}, got {threads!r}")
    check_tile(tile)
    if not (_whole(overlap) and overlap >= 0):  # type: ignore[operator]
        raise UsageError(f"overlap must be a whole number of pixels >= 0, got {overlap!r}")
    if max_batch_pixels is not None and not (_whole(max_batch_pixels) and max_batch_pixels >= 1):  # type: ignore[operator]
        raise UsageError(f"max_batch_pixels must be None or >= 1, got {max_batch_pixels!r}")


#: Float pixels taken: [0, 1] and the overshoot of unclipped noise around it (4 sigma at 0.75);
#: 0-255 floats came back as a white page, silently.
FLOAT_RANGE = (-3.0, 4.0)


def _checked_image(index: int, image: object) -> np.ndarray:
    """One image for `Denoiser.denoise` as float32, or a UsageError saying what is wrong:
    uint8 pixels (0-255) read as 0-1 values, NaN spreading through the model's window."""
    raw = np.asarray(image)
    if raw.ndim != 2:
        raise UsageError(f"image {index}: expected a 2-D grayscale image, got shape {raw.shape}")
    if raw.size == 0:
        raise UsageError(f"image {index}: shape {raw.shape} has no pixels to denoise")
    if raw.dtype.kind in "ui" and (top := raw.max()) > 1:
        raise UsageError(
            f"image {index}: {raw.dtype} values up to {top}; images are floats in "
            f"[0, 1] (divide by {np.iinfo(raw.dtype).max})"
        )
    img = raw.astype(np.float32, copy=False)
    if (bad := img.size - np.count_nonzero(np.isfinite(img))) > 0:
        raise UsageError(f"image {index}: {bad} values are NaN or infinite")
    low, top = float(img.min()), float(img.max())
    if not FLOAT_RANGE[0] <= low <= top <= FLOAT_RANGE[1]:
        raise UsageError(
            f"image {index}: values from {low:g} to {top:g}; images are floats in [0, 1] "
            "(0-255 floats: divide by 255; 16-bit: by 65535)"
        )
    return img


class Denoiser:
    """An onnxruntime session over a denoising model, checked before first use.

    Raises ModelError for a missing, corrupt or incompatible model and ProviderError when the
    requested device does not really load.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        threads: int | None = None,
        tile: int = 1024,
        overlap: int = 32,
        max_batch_pixels: int | None = None,
        precision: str = "auto",
        border: int | None = None,
        placement: Placement | None = None,
    ) -> None:
        check_settings(device, threads, tile, overlap, max_batch_pixels)
        if placement is None:
            placement = place(model, device, precision)
        elif not placement.agrees(model, device, precision):
            raise UsageError(
                f"model {model}, device {device}, precision {precision}: not what the given "
                f"placement says ({placement.model_file} on {placement.device})"
            )
        path = Path(placement.model_file)
        self.session = load_session(path, placement.providers, threads)
        self.provider = self.session.get_providers()[0]
        # What really runs: under device auto, a provider that failed to load (CUDA without
        # its libraries) fell back to the CPU, with the CPU's batches and fork rules.
        self.placement = replace(placement, providers=(self.provider,))
        if placement.device != "auto" and self.provider != placement.provider:
            raise ProviderError(
                f"device {placement.device}: {placement.provider} failed to initialise and "
                f"onnxruntime fell back to {self.provider} (check the CUDA/cuDNN libraries); "
                "choose device cpu to run on the CPU deliberately"
            )
        self.info = inspect_session(self.session, path)
        self.tile = tile
        self.overlap = overlap
        self.border = border_width(self.info) if border is None else border
        native = self.info.native_side
        self.leave_below = round(LEAVE_BELOW * native)  # sides in pixels
        as_is = self.info.min_side_as_is
        # A model's own word moves the bound between the small-image rules, never past its
        # native side: images at least that large are never scaled down into it.
        self.resample_below = (
            round(RESAMPLE_BELOW * native)
            if as_is is None
            else min(max(as_is, self.leave_below), native)
        )
        self.max_batch_pixels = max_batch_pixels or self.placement.batch_pixels
        check_runs(self.session, self.info)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model call on (N, 1, H, W) float32.

        Pads what the model needs and crops it off again: a fixed batch size (with blank
        images), sizes that must be multiples (U-Nets: by repeating the last row and column,
        as tiling does, so an image's edge is not a line of zeros).
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 1 or 0 in batch.shape:
            raise UsageError(f"run takes (N, 1, H, W) float32 images, got shape {batch.shape}")
        m = self.info.size_multiple
        height, width = batch.shape[2:]
        pad_h, pad_w = -height % m, -width % m
        if pad_h or pad_w:
            padded = np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
            return self._run_batch(padded)[:, :, :height, :width]
        return self._run_batch(batch)

    def _call(self, batch: np.ndarray) -> np.ndarray:
        """One session run, whose output must be one image per input at the input's size:
        numpy would spread one result over a whole batch, or fail in its own words."""
        out = self.session.run([self.info.output_name], {self.info.input_name: batch})[0]
        got = np.shape(out)
        if got == batch.shape:
            return out
        n, _, h, w = batch.shape
        if len(got) == 4 and got[:2] == (n, 1):
            why = f"a {got[3]}x{got[2]} image for a {w}x{h} model input"
        elif len(got) == 4 and got[0] != n:
            why = f"{got[0]} image(s) for a batch of {n}"
        else:
            why = f"shape {list(got)} for input {list(batch.shape)}"
        raise ImageError(f"model returned {why}; nothing written")

    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        n = self.info.fixed_batch
        if n is None or len(batch) == n:
            return self._call(batch)
        outs = []
        for i in range(0, len(batch), n):
            chunk = batch[i : i + n]
            if len(chunk) < n:
                chunk = np.concatenate(
                    [chunk, np.zeros((n - len(chunk), *chunk.shape[1:]), np.float32)]
                )
            outs.append(self._call(chunk))
        return np.concatenate(outs)[: len(batch)]

    def accepts_whole(self, height: int, width: int) -> bool:
        """Whether an image of this size goes through the model in one piece (else tiles)."""
        fixed = self.info.fixed_size
        if fixed is not None:
            return fixed == (height, width)
        return height <= self.tile and width <= self.tile

    def batch_limit(self, height: int, width: int, batch_size: int) -> int:
        """Images of this size per model call, capped so activations stay bounded."""
        return max(1, min(batch_size, self.max_batch_pixels // max(1, height * width)))

    def tile_plan(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(tile height, tile width, overlap, tiles per model call) for an image that tiles."""
        m = self.info.size_multiple

        def up(v: int) -> int:
            return -(-v // m) * m

        # Overlap at least the receptive radius (exact stitching), in steps of the multiple.
        wanted = up(max(self.overlap, self.info.receptive_radius))
        # A tile keeps at least one multiple beyond both overlaps: a smaller --tile would cap
        # the overlap under the receptive radius (tile 64 on unet_scenes: 24 of 34 pixels,
        # seams of up to 1.7 grey levels).
        limit = max(up(self.tile), 2 * wanted + m)
        th, tw = self.info.fixed_size or (
            balanced_tile(up(height), limit, wanted, m),
            balanced_tile(up(width), limit, wanted, m),
        )
        overlap = min(wanted, (min(th, tw) - 1) // 2 // m * m)
        # Tiles per model call from the same pixel budget as whole images: memory per file stays
        # bounded by design, whatever the image's size.
        return th, tw, overlap, max(1, self.max_batch_pixels // (th * tw))

    def denoise_same_size(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) float32 in [0, 1], already in the model's polarity -> (N, H, W).

        Images whose background needs it (see `bordered`) are mirrored out first; small
        ones are left as they are or go through the model's native scale (see LEAVE_BELOW)."""
        _, h, w = images.shape
        if min(h, w) < self.leave_below:
            return images.copy()
        if min(h, w) < self.resample_below:
            return self._denoise_at_native_scale(images)
        pads = bordered(sampled(images), h, w, self.border)
        if not self.accepts_whole(h, w):
            results = []
            for img, pad in zip(images, pads, strict=True):  # tiled as a streamed image is
                b = self.border if pad else 0
                bands = self.denoise_rows(h, w, lambda y0, y1, img=img: img[y0:y1], b)
                results.append(np.concatenate(list(bands)))
            return np.stack(results)
        if not pads.any():
            return self.run(images[:, None])[:, 0]
        b, out = self.border, np.empty_like(images)
        if not pads.all():
            out[~pads] = self.run(images[~pads][:, None])[:, 0]
        padded = np.pad(images[pads], ((0, 0), (b, b), (b, b)), mode="symmetric")
        out[pads] = self.run(padded[:, None])[:, 0, b : b + h, b : b + w]
        return out

    def _denoise_at_native_scale(self, images: np.ndarray) -> np.ndarray:
        """Small images scaled up (bicubic) so their smaller side is the model's native one,
        denoised, and brought back (area), a pixel budget's worth at a time."""
        _, h, w = images.shape
        scale = self.info.native_side / min(h, w)
        big_h, big_w = max(1, round(h * scale)), max(1, round(w * scale))
        out = np.empty_like(images)
        step = self.batch_limit(big_h, big_w, len(images))
        for i in range(0, len(images), step):
            up = np.clip(resample(images[i : i + step], big_h, big_w, "bicubic"), 0.0, 1.0)
            done = np.clip(self.denoise_same_size(up), 0.0, 1.0)
            out[i : i + step] = resample(done, h, w, "area")
        return out

    def denoise_rows(
        self,
        height: int,
        width: int,
        rows: Callable[[int, int], np.ndarray],
        border: int | None = None,
    ) -> Iterator[np.ndarray]:
        """An image too large to hold, read through `rows(y0, y1)` (in the model's polarity,
        y0 never decreasing) and denoised a row of tiles at a time, top to bottom: the same
        tiles, hence the same pixels, as `denoise_same_size` on the whole image.

        `border`: pixels mirrored out first (see `bordered`); None: the model's border."""
        b = self.border if border is None else border
        ph, pw = height + 2 * b, width + 2 * b
        th, tw, overlap, per_call = self.tile_plan(ph, pw)
        m = self.info.size_multiple
        source = mirrored_rows(rows, height, width, b) if b else rows
        bands = tiled_rows(ph, pw, source, self.run, th, tw, overlap, per_call, multiple=m)
        return cropped_bands(bands, b, height, width) if b else bands

    def denoise_group(self, images: np.ndarray, invert: str = "auto") -> np.ndarray:
        """(N, H, W) same-sized float32 images in [0, 1], in one model call (or tile runs):
        each is brought to the model's polarity and back."""
        batch = np.asarray(images, dtype=np.float32)
        flips = needs_inversion_batch(batch, invert, self.info.polarity)
        if flips.any():
            batch = batch.copy()  # the caller's images stay as they were
            batch[flips] = 1.0 - batch[flips]
        out = self.denoise_same_size(batch)
        if flips.any():
            out[flips] = 1.0 - out[flips]
        return out

    def denoise(
        self, images: np.ndarray | Sequence[np.ndarray], invert: str = "auto", batch_size: int = 256
    ) -> list[np.ndarray]:
        """Denoise 2-D float images in [0, 1] of any sizes; returns them in the same order.

        The Python API's entry point; the batch runtime groups by size itself and calls
        `denoise_group`.
        """
        if invert not in INVERT_CHOICES:
            raise UsageError(f"invert must be one of {INVERT_CHOICES}, got {invert!r}")
        if isinstance(images, np.ndarray) and images.ndim == 2:
            raise UsageError(
                f"one {images.shape[0]}x{images.shape[1]} image: give a list of images "
                "(denoise([image])[0]) or an (N, H, W) stack"
            )
        items = [_checked_image(i, img) for i, img in enumerate(images)]
        results: list[np.ndarray | None] = [None] * len(items)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(items):
            by_shape.setdefault(img.shape, []).append(i)
        for (h, w), idx in by_shape.items():
            step = self.batch_limit(h, w, batch_size)
            for s in range(0, len(idx), step):
                chunk = idx[s : s + step]
                out = self.denoise_group(np.stack([items[i] for i in chunk]), invert)
                for i, o in zip(chunk, out, strict=True):
                    results[i] = o
        return results  # type: ignore[return-value]
