"""The model: one onnxruntime session, the provider that really loaded, and inference on arrays.

`Denoiser` is the Python API under the CLI: give it float images in [0, 1] of any size and it
returns denoised ones, handling polarity, fixed-shape models and tiling of large images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from denoise_cli.core.errors import MissingDependency, ModelError, ProviderError, UsageError
from denoise_cli.model.info import SUPPORTED_SCHEMA_MAJOR, ModelInfo
from denoise_cli.model.scale import resample
from denoise_cli.model.tiling import cropped_bands, mirrored_rows, tiled_rows

#: Short names accepted by --device, mapped to onnxruntime's provider names. Any full provider
#: name that the installed onnxruntime lists is accepted too.
DEVICE_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
#: What --device auto tries, best first. TensorRT is left out: it builds an engine per input
#: shape, which costs more than it saves on tiny models and mixed image sizes.
AUTO_ORDER = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    # Only onnxruntime-openvino offers it (installed by choice, instead of onnxruntime): with
    # the INT8 file it ran unet_scenes 1.58x faster than the CPU provider's fp32 model-only
    # and 1.19x end to end on 28x28 digits (2 AVX2 cores, benchmarks/results/speed-2026-12-02b).
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)


def _models_dir() -> Path:
    return Path(str(resources.files("denoise_cli") / "models"))


#: The bundled model that no --model (or --model default) means; README, "The bundled models".
DEFAULT_MODEL = "unet_world"


def default_model_path() -> Path:
    """The bundled model used when --model is not given."""
    return _models_dir() / f"{DEFAULT_MODEL}.onnx"


def bundled_models() -> dict[str, Path]:
    """Models shipped in the package, by name (the file name without .onnx). Variant files
    beside a model (`NAME.int8.onnx`) are not models of their own: see `precision_file`."""
    return {p.stem: p for p in sorted(_models_dir().glob("*.onnx")) if "." not in p.stem}


#: Which file of a model runs: fp32, its INT8 export beside it, or auto (`precision_file`).
PRECISIONS = ("auto", "fp32", "int8")

#: Providers on which --precision auto takes the INT8 file: where it measured faster than
#: fp32 after passing the export's accuracy check (the OpenVINO provider: unet_scenes 8,969
#: images/s against 5,969 for its own fp32 and 5,685 for the CPU provider's, 0.03 dB below
#: fp32 on test digits). Elsewhere fp32: the CPU provider ran INT8 at 0.78x of fp32 on AVX2,
#: and slower on an AVX-512 VNNI Xeon too.
INT8_FASTER_ON = frozenset({"OpenVINOExecutionProvider"})


def precision_file(path: Path, precision: str, provider: str) -> Path:
    """The file to load for `precision` on `provider`: `path` itself, or the verified INT8
    export beside it (`denoise-export --int8` writes NAME.int8.onnx next to NAME.onnx)."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    int8 = path.with_name(f"{path.name.removesuffix('.onnx')}.int8.onnx")
    if precision == "int8" and not int8.is_file():
        raise ModelError(f"{path}: no INT8 file beside it ({int8.name}; denoise-export --int8)")
    if precision == "int8" or (
        precision == "auto" and provider in INT8_FASTER_ON and int8.is_file()
    ):
        return int8
    return path


def resolve_model(model: str | Path | None) -> Path:
    """A path as given, or a bundled model's name (e.g. 'conv_denoiser'); None or 'default': the
    default model."""
    if model is None:
        return default_model_path()
    path = Path(model)
    if not path.exists() and path.suffix == "":
        if str(model) == "default":
            return default_model_path()
        if str(model) in bundled_models():
            return bundled_models()[str(model)]
    return path


def import_onnxruntime() -> Any:
    """onnxruntime, with its telemetry off unless the user set ORT_DISABLE_TELEMETRY: its
    POSIX builds (1.32 here) write a device id and an event queue under ~/.cache/Microsoft
    on every import, and warn in colour where HOME is read-only; a batch tool writes only OUT.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency(
            "onnxruntime is not installed: pip install 'denoise-batch[cpu]' "
            "(or 'denoise-batch[gpu]' for CUDA)"
        ) from None
    return onnxruntime


def conflicting_runtimes() -> list[str]:
    """Installed onnxruntime distributions; more than one means they overwrite each other."""
    import importlib.metadata  # here, not at start-up: 15 ms of every run

    names = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name == "onnxruntime" or (name.startswith("onnxruntime-") and "extensions" not in name):
            names.add(name)
    return sorted(names) if len(names) > 1 else []


#: Options per provider. OpenVINO's CPU plugin defaults to bf16 on CPUs that have it, which
#: moved outputs by up to 0.14 in a test here: it computes in FP32, as the export verified.
#: It also pins its threads to cores, the same cores in every worker process: two workers of
#: one thread each shared one core of two (measured: 2,250 images/s each, 4,500 alone; with
#: pinning off, 4,400 each).
PROVIDER_OPTIONS: dict[str, dict[str, str]] = {
    "OpenVINOExecutionProvider": {
        "device_type": "CPU",
        "precision": "FP32",
        "load_config": '{"CPU": {"ENABLE_CPU_PINNING": "NO"}}',
    },
}


def provider_options(provider: str, threads: int | None) -> dict[str, str]:
    """PROVIDER_OPTIONS for `provider`, with the thread count where the provider keeps its own
    pool: OpenVINO ignores onnxruntime's intra_op_num_threads and took every core in each
    worker process (measured: two workers on 2 cores ran 3.20 s against 3.11 s for one)."""
    options = dict(PROVIDER_OPTIONS.get(provider, {}))
    if threads and provider == "OpenVINOExecutionProvider":
        options["num_of_threads"] = str(threads)
    return options


def resolve_providers(device: str, available: Sequence[str]) -> list[str]:
    """The provider list to ask onnxruntime for; raises ProviderError for an unusable device."""
    if device == "auto":
        return [p for p in AUTO_ORDER if p in available] or list(available)
    wanted = DEVICE_ALIASES.get(device.lower(), device)
    if wanted not in available:
        hint = ""
        if wanted == "OpenVINOExecutionProvider":
            hint = (
                " Install onnxruntime's OpenVINO build instead of the CPU one: "
                "pip uninstall -y onnxruntime && pip install 'denoise-batch[openvino]'."
            )
        if wanted == "CUDAExecutionProvider":
            hint = (
                " Install the GPU runtime instead of the CPU one: "
                "pip uninstall -y onnxruntime && pip install 'denoise-batch[gpu]'."
            )
            clash = conflicting_runtimes()
            if clash:
                hint = f" Both {' and '.join(clash)} are installed and overwrite each other:"
                hint += " uninstall both, then install only onnxruntime-gpu."
        raise ProviderError(
            f"device {device}: {wanted} is not available in this onnxruntime "
            f"(available: {', '.join(available)}).{hint}"
        )
    return [wanted] if wanted == "CPUExecutionProvider" else [wanted, "CPUExecutionProvider"]


#: --invert: auto decides per image (`inversion_from_samples`); yes and no force it.
INVERT_CHOICES = ("auto", "yes", "no")


def needs_inversion(image: np.ndarray, invert: str, polarity: str) -> bool:
    """Whether to invert an image so it matches the model's polarity (and invert back after).

    auto: a digit image is mostly background, so its median pixel tells the background colour,
    robustly even under heavy noise; invert when that disagrees with the model's training data.
    """
    return bool(needs_inversion_batch(image[None], invert, polarity)[0])


def needs_inversion_batch(images: np.ndarray, invert: str, polarity: str) -> np.ndarray:
    """`needs_inversion` for each of (N, H, W) same-sized images at once (one numpy pass)."""
    return inversion_from_samples(sampled(images), invert, polarity)


def polarity_sample_step(pixels: int) -> int:
    """Every how many pixels (in row-major order) the polarity decision samples one: up to
    4,096 samples, so "median above 0.5" is "more than half the samples above 0.5", no sort."""
    return max(1, pixels // 4096)


def inversion_from_samples(samples: np.ndarray, invert: str, polarity: str) -> np.ndarray:
    """The decision of `needs_inversion_batch` from (N, S) sampled pixels (see
    polarity_sample_step); a streamed image gathers its samples band by band."""
    n = len(samples)
    if invert == "yes":
        return np.ones(n, bool)
    if invert == "no" or polarity not in ("light-on-dark", "dark-on-light"):
        return np.zeros(n, bool)
    light_background = np.count_nonzero(samples > 0.5, axis=1) * 2 > samples.shape[1]
    return light_background if polarity == "light-on-dark" else ~light_background


def balanced_tile(length: int, limit: int, overlap: int, multiple: int) -> int:
    """The smallest tile side (a multiple of `multiple`, at most `limit`) that covers `length`
    with as few overlapping tiles as `limit` allows. Fixed `limit`-sized tiles computed a
    640x640 page as four 512x512 tiles: 2.6x its pixels, measured 2.1x slower than one piece;
    balanced, the same page at tile 512 takes four 356x356 tiles (1.24x its pixels)."""
    if length <= limit:
        return length
    useful = limit - 2 * overlap
    count = -(-(length - 2 * overlap) // useful) if useful > 0 else -(-length // limit)
    side = -(-(length + 2 * overlap * (count - 1)) // count)
    return min(limit, -(-side // multiple) * multiple)


#: Pixels mirrored out past an image's edges when the model does not say how far it sees.
DEFAULT_BORDER = 16
#: An image more than three quarters of whose pixels are above this level (in the model's
#: polarity) has a background that is not the model's own zero padding: its convolutions then
#: draw lines and halos along the edges (unet_scenes on constant images: 0.6 grey levels at
#: 0.05, 12.7 at 0.1, 26 at 0.3; see benchmarks/border.py). Three quarters, not half: a noisy
#: black background, clipped at 0, has half its pixels at 0, so "half above" padded a third of
#: noisy MNIST digits (3x the time) where "three quarters" pads none. Decided on the pixels
#: the polarity decision samples, which the streamed path gathers too: every path agrees.
BORDER_LEVEL = 0.03
#: Images whose mirrored border adds at most this share of pixels get it whatever their
#: frame (pages, all streamed images); smaller ones (a 28x28 digit: 10x its pixels at radius
#: 34) only when their frame needs it.
BORDER_CHEAP = 0.25


#: Small images, as shares of the model's native side (28): under LEAVE_BELOW they are left
#: as they are, under RESAMPLE_BELOW they go through the model at its native scale (bicubic
#: up, area back down). Measured with benchmarks/tiny.py on 1,000 MNIST test digits
#: area-downsampled (8x8: 17 levels, as UCI's scans): both bundled models as they are made 8x8
#: scans worse than the input (12.4 dB from 22.2 at noise sigma 0.1, from 16.3 at 0.2; 94-100%
#: of images worse); through 28x28 better at 0.2 (18.3) but worse at 0.1 (21.4, 72% of images
#: worse), and still 17% worse at side 12; from side 14 to 19 the native scale beat the model
#: as is (unet_scenes, sigma 0.1, side 14: 24.7 dB against 22.2, 1% of images worse against
#: 46%); from side 20 the model as is was better (harming 1% at most).
LEAVE_BELOW = 14 / 28
RESAMPLE_BELOW = 20 / 28


def border_width(info: ModelInfo) -> int:
    """Pixels mirrored out past each image edge before the model runs (then cropped): its
    receptive radius, so that no output pixel sees the zeros its convolutions pad with.
    Rounded up to the size multiple, so the pooling grid stays where it was."""
    if info.fixed_size is not None:
        return 0  # the model takes one size: nothing can be added
    radius = info.receptive_radius or DEFAULT_BORDER
    return -(-radius // info.size_multiple) * info.size_multiple


def border_is_cheap(height: int, width: int, border: int) -> bool:
    """Whether mirroring `border` pixels out costs at most BORDER_CHEAP more pixels."""
    return (height + 2 * border) * (width + 2 * border) <= (1 + BORDER_CHEAP) * height * width


def bordered(samples: np.ndarray, height: int, width: int, border: int) -> np.ndarray:
    """Per image, from its (N, S) polarity samples in the model's polarity (see
    polarity_sample_step): whether it gets the mirrored border."""
    n = len(samples)
    if not border:
        return np.zeros(n, bool)
    if border_is_cheap(height, width, border):
        return np.ones(n, bool)
    return np.count_nonzero(samples > BORDER_LEVEL, axis=1) * 4 > samples.shape[1] * 3


def sampled(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, S): the pixels the polarity and border decisions look at."""
    flat = images.reshape(len(images), -1)
    return flat[:, :: polarity_sample_step(flat.shape[1])]


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
    ) -> None:
        ort = import_onnxruntime()
        path = resolve_model(model)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        providers = resolve_providers(device, ort.get_available_providers())
        path = precision_file(path, precision, providers[0])
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # we report provider fallbacks ourselves, as errors
        opts.inter_op_num_threads = 1
        # Idle onnxruntime threads spin by default, burning the cores that decoding and
        # encoding need; measured here: no model-only throughput lost without spinning.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), opts, providers=[(p, provider_options(p, threads)) for p in providers]
            )
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: not a loadable ONNX/ORT model ({reason[:300]})") from None
        self.provider = self.session.get_providers()[0]
        if device != "auto" and self.provider != providers[0]:
            raise ProviderError(
                f"device {device}: {providers[0]} failed to initialise and onnxruntime fell "
                f"back to {self.provider} (check the CUDA/cuDNN libraries); "
                "choose device cpu to run on the CPU deliberately"
            )
        self.info = self._inspect(path)
        self.tile = tile
        self.overlap = overlap
        self.border = border_width(self.info) if border is None else border
        native = self.info.native_side
        self.leave_below = round(LEAVE_BELOW * native)  # sides in pixels
        self.resample_below = round(RESAMPLE_BELOW * native)
        # Pixels per model call. On CPU, batches of ~80 digits keep activations in cache and
        # measured fastest (15k vs 13.6k images/s per thread at 256); GPUs want big batches.
        on_cpu = self.provider == "CPUExecutionProvider"
        self.max_batch_pixels = max_batch_pixels or (1 << 16 if on_cpu else 1 << 22)
        self._check_runs()

    def _inspect(self, path: Path) -> ModelInfo:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        schema = meta.get("denoise_batch.schema", str(SUPPORTED_SCHEMA_MAJOR))
        if not schema.split(".")[0].isdigit() or int(schema.split(".")[0]) > SUPPORTED_SCHEMA_MAJOR:
            raise ModelError(f"{path}: metadata schema {schema} is newer than this denoise-batch")
        if len(inputs) != 1 or not outputs:
            raise ModelError(
                f"{path}: incompatible model: needs exactly 1 input and 1 output, "
                f"has {len(inputs)} and {len(outputs)}"
            )
        shape = tuple(inputs[0].shape)
        if inputs[0].type != "tensor(float)":
            raise ModelError(
                f"{path}: incompatible model: input type {inputs[0].type}, needs float32"
            )
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

    def _check_runs(self) -> None:
        """One tiny inference now, so an image-to-image mismatch fails before any file is read."""
        h, w = self.info.fixed_size or (28, 28)
        x = np.zeros((self.info.fixed_batch or 1, 1, h, w), dtype=np.float32)
        try:
            y = self.session.run([self.info.output_name], {self.info.input_name: x})[0]
        except Exception as exc:
            raise ModelError(f"{self.info.path}: model fails on a {h}x{w} image ({exc})") from None
        if y.shape != x.shape:
            raise ModelError(
                f"{self.info.path}: incompatible model: output shape {list(y.shape)} for input "
                f"{list(x.shape)}; denoise-batch needs an image-to-image model"
            )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Model call on (N, 1, H, W) float32.

        Pads what the model needs and crops it off again: a fixed batch size (with blank
        images), sizes that must be multiples (U-Nets: by repeating the last row and column,
        as tiling does, so an image's edge is not a line of zeros).
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        m = self.info.size_multiple
        height, width = batch.shape[2:]
        pad_h, pad_w = -height % m, -width % m
        if pad_h or pad_w:
            padded = np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
            return self._run_batch(padded)[:, :, :height, :width]
        return self._run_batch(batch)

    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        n = self.info.fixed_batch
        if n is None or len(batch) == n:
            return self.session.run([self.info.output_name], {self.info.input_name: batch})[0]
        outs = []
        for i in range(0, len(batch), n):
            chunk = batch[i : i + n]
            if len(chunk) < n:
                chunk = np.concatenate(
                    [chunk, np.zeros((n - len(chunk), *chunk.shape[1:]), np.float32)]
                )
            outs.append(self.session.run([self.info.output_name], {self.info.input_name: chunk})[0])
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
        th, tw = self.info.fixed_size or (
            balanced_tile(up(height), up(self.tile), wanted, m),
            balanced_tile(up(width), up(self.tile), wanted, m),
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
        items = [np.asarray(img, dtype=np.float32) for img in images]
        for img in items:
            if img.ndim != 2:
                raise UsageError(f"expected 2-D grayscale images, got shape {img.shape}")
            if img.size == 0:
                raise UsageError(f"an image of shape {img.shape} has no pixels to denoise")
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
