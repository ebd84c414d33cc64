"""One chunk of files start to finish, in whichever worker runs it (this process, a helper
process, a Ray actor): decode every file, run same-sized images through the transform together,
check and encode each result, write it atomically, and say what happened to each file.

Model calls run under a watchdog (`call_watched`): a call that overruns the job's model timeout
fails its files, and a stop request (SIGINT/SIGTERM) is acted on while a call is in flight,
not after it: onnxruntime cannot be interrupted, so the call runs in a thread of its own that
the worker stops waiting for (a model that never returns no longer holds the run).
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar, cast

import numpy as np

from denoise_cli.core.errors import NOT_FINITE, ImageError
from denoise_cli.core.report import Outcome
from denoise_cli.files.images import (
    HeldImage,
    Pages,
    SourceInfo,
    decode_bytes,
    encode,
    encode_pages,
    output_depth,
    quantize,
    stores_float,
)
from denoise_cli.model.streamed import (
    HeldBands,
    PngBands,
    Stopped,
    denoised_held,
    denoised_png,
    streamable,
)
from denoise_cli.run.job import Job
from denoise_cli.run.transforms import StreamingTransform, Transform
from denoise_cli.trees.plan import SourceTree, TargetTree
from denoise_cli.trees.walk import FileJob

T = TypeVar("T")
#: Bytes per pixel that any supported file can need (16-bit RGBA stored uncompressed is 8),
#: and room for metadata (ICC profiles, EXIF, text): a larger file is refused unread.
MAX_BYTES_PER_PIXEL = 16
METADATA_BYTES = 64 << 20


def max_file_bytes(max_pixels: int) -> int:
    """The largest file an image within `max_pixels` can be (a 30 GB file named 000.png took
    the whole run down with a MemoryError when read first and checked after)."""
    return max_pixels * MAX_BYTES_PER_PIXEL + METADATA_BYTES


#: The name of the threads model calls run in (the CLI looks for ones still running at exit).
MODEL_CALL_THREAD = "model-call"


def _held_pixels(gray: np.ndarray, info: SourceInfo) -> int:
    """What a decoded image counts against chunk_pixels: a colour image holds its RGB planes
    and 8-bit luminance (4 bytes a pixel) beside the float luminance (4): twice a grey one."""
    return gray.size * (2 if info.color is not None else 1)


class ModelTimeout(Exception):
    """A model call overran the job's model timeout (it goes on in its thread, unwaited)."""


def call_watched(call: Callable[[], T], timeout: float, should_stop: Callable[[], bool]) -> T:
    """`call()` in a daemon thread, waited for in short slices: raises Stopped once
    `should_stop()`, ModelTimeout after `timeout` seconds; the call's own exception otherwise."""
    box: dict[str, object] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=MODEL_CALL_THREAD, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not done.wait(0.05):
        if should_stop():
            raise Stopped
        if time.monotonic() > deadline:
            raise ModelTimeout
    if "error" in box:
        raise cast(BaseException, box["error"])
    return cast(T, box["value"])


def check_results(results: np.ndarray, count: int, shape: tuple[int, int]) -> list[str | None]:
    """Why each of a group's `count` outputs cannot be right (None: it can). Such outputs are
    failures, never files: a model returning NaN would write black images, one returning
    another size a wrong-sized image. One vectorized pass per group: per image, the two
    checks cost ~10 us, a few percent of a 28x28 digit's whole trip."""
    results = np.asarray(results)
    if results.dtype.kind != "f":
        return [f"model returned {results.dtype} values, not numbers; nothing written"] * count
    if results.ndim != 3 or len(results) != count or results.shape[1:] != shape:
        got = results.shape[1:][::-1] if results.ndim == 3 else results.shape
        size = "x".join(str(v) for v in got)
        return [
            f"model returned a {size} image for a {shape[1]}x{shape[0]} input; nothing written"
        ] * count
    finite = np.isfinite(results.reshape(count, -1)).all(axis=1)
    return [None if ok else NOT_FINITE for ok in finite.tolist()]


Item = tuple[FileJob, np.ndarray, SourceInfo]


class ChunkWorker:
    """Runs chunks with one transform. Outcomes go to `emit` as they are decided (a helper
    sends them on at once, so its parent knows which files are done if the helper dies), and
    come back from `run`. `stuck`: a model call overran and still runs in its thread."""

    def __init__(
        self,
        transform: Transform,
        job: Job,
        source: SourceTree,
        target: TargetTree,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.transform, self.job, self.source, self.target = transform, job, source, target
        self.should_stop = should_stop
        self.max_bytes = max_file_bytes(job.max_pixels)
        self.stuck = False
        self.outcomes: list[Outcome] = []
        self._groups: dict[tuple[int, int], list[Item]] = {}
        self._held = 0

    def run(self, files: list[FileJob]) -> list[Outcome]:
        """Decode, transform and write `files`; one Outcome per finished file (a stop leaves
        the rest without one: not done, not failed)."""
        self.outcomes, self._groups, self._held = [], {}, 0
        # Decoders warn about files they still read ("Invalid APNG, will use default PNG
        # image"): the file's outcome says what matters; a raw warning on stderr does not.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                for file in files:
                    if self.should_stop():
                        break
                    self._take(file)
                for shape in list(self._groups):
                    if self.should_stop():
                        break
                    self._run_group(shape)
            except Stopped:  # asked to stop during a model call: that group is not done
                pass
        self._groups = {}
        return self.outcomes

    def _record(self, file: FileJob, error: str | None = None) -> None:
        self.outcomes.append(Outcome(file.rel, file.dst, error))

    def _model(self, call: Callable[[], T]) -> T:
        return call_watched(call, self.job.model_timeout, self.should_stop)

    def _take(self, file: FileJob) -> None:
        """Read and decode one file: into a group for the model, or streamed at once."""
        try:
            data = self.source.read(file.src, self.max_bytes)
            suffix = os.path.splitext(file.src)[1]
            streams = self.transform.streams
            decoded = streamable(data, suffix, self.job.max_pixels, streams)
            if decoded is None:
                decoded = decode_bytes(data, suffix, self.job.max_pixels, streams, pages=True)
        except FileNotFoundError:
            return self._record(file, "cannot read: file vanished")
        except OSError as exc:
            return self._record(file, f"cannot read: {exc.strerror or exc}")
        except ImageError as exc:
            return self._record(file, str(exc))
        except Exception as exc:  # a decoder bug on a damaged file costs that file, not the run
            return self._record(file, f"cannot decode: {type(exc).__name__}: {exc}")
        if isinstance(decoded, Pages):
            return self._paged(decoded, file)
        if isinstance(decoded, PngBands | HeldImage):
            band_source = decoded if isinstance(decoded, PngBands) else HeldBands(decoded)
            del data, decoded  # a PNG's bytes live on in band_source; a held image's not
            return self._streamed(band_source, file)
        gray, info = decoded
        group = self._groups.setdefault(gray.shape, [])
        group.append((file, gray, info))
        self._held += _held_pixels(gray, info)
        if len(group) >= self.transform.batch_limit(*gray.shape):
            self._run_group(gray.shape)
        elif self._held > self.job.chunk_pixels:  # many sizes or large images: bound memory
            groups = self._groups
            held = {s: sum(_held_pixels(g, i) for _, g, i in group) for s, group in groups.items()}
            self._run_group(max(held, key=held.__getitem__))
        return None

    def _run_group(self, shape: tuple[int, int]) -> None:
        items = self._groups.pop(shape)
        self._held -= sum(_held_pixels(gray, info) for _, gray, info in items)
        files = [f for f, _, _ in items]
        results = self._denoised([img for _, img, _ in items], files)
        if not isinstance(results, str):
            try:  # the group-wide checks and rounding copy the whole batch once more
                problems = check_results(results, len(items), shape)
                rounded, quantized = self._rounded(items, results, problems)
            except MemoryError as exc:
                results = model_failure(exc)
            else:
                return self._write_group(items, rounded, problems, quantized)
        for file in files:
            self._record(file, results)

    def _denoised(self, frames: list[np.ndarray], files: list[FileJob]) -> np.ndarray | str:
        """The transform's results for `frames` (same-sized), or why there are none (for every
        file). Their batch is stacked here, where running out of memory costs these files."""
        try:
            batch = frames[0][None] if len(frames) == 1 else np.stack(frames)  # one: a view
            return self._model(lambda: self.transform(batch, files))
        except ModelTimeout:
            self.stuck = True
            timeout = self.job.model_timeout
            return f"model call took over {timeout:g} s (the model timeout); nothing written"
        except Stopped:
            raise
        except ImageError as exc:  # an output that cannot be right, in the model's own check
            return str(exc)
        except Exception as exc:  # e.g. onnxruntime failing on this size: these files fail
            return model_failure(exc)

    def _paged(self, pages: Pages, file: FileJob) -> None:
        """A multi-page TIFF: pages of a size denoised together, the file written once every
        page is (one page failing fails the file: nothing half-denoised is written)."""
        if self.job.output_format == "png":  # before any model call, not after them all
            count = len(pages.pages)
            return self._record(
                file, f"{count} pages: one PNG cannot hold them; keep the TIFF format"
            )
        results: list[np.ndarray] = [np.empty(0)] * len(pages.pages)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index, (gray, _) in enumerate(pages.pages):
            by_shape.setdefault(gray.shape, []).append(index)
        for shape, indices in by_shape.items():
            limit = max(1, self.transform.batch_limit(*shape))
            for start in range(0, len(indices), limit):
                if self.should_stop():  # between model calls: nothing written, a rerun does it
                    return None
                part = indices[start : start + limit]
                # Each page its own name ("a.tif#2"): per-file noise differs page to page.
                named = [file._replace(rel=f"{file.rel}#{i + 1}") for i in part]
                out = self._denoised([pages.pages[i][0] for i in part], named)
                if isinstance(out, str):
                    return self._record(file, out)
                for i, problem in zip(part, check_results(out, len(part), shape), strict=True):
                    if problem is not None:
                        return self._record(file, f"page {i + 1}: {problem}")
                for i, result in zip(part, out, strict=True):
                    results[i] = result
        if self.should_stop():
            return None
        try:
            self.target.write(file.dst, encode_pages(results, pages, self.job.output_format))
        except ImageError as exc:
            return self._record(file, str(exc))
        except Exception as exc:  # an encoder bug must cost one file, not the batch
            return self._record(file, f"{type(exc).__name__}: {exc}")
        return self._record(file)

    def _rounded(
        self, items: list[Item], results: np.ndarray, problems: list
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The group's results clipped, and rounded to each output depth, once for the group
        rather than per image in encode (~13 us a digit)."""
        if all(p is not None for p in problems):
            return results, {}
        results = np.clip(results, 0.0, 1.0)
        fmt = self.job.output_format
        depths = {output_depth(i) for _, _, i in items if not stores_float(i, fmt)}
        with np.errstate(invalid="ignore"):  # a NaN image among them fails, unwritten
            return results, {depth: quantize(results, depth) for depth in depths}

    def _write_group(
        self,
        items: list[Item],
        results: np.ndarray,
        problems: list,
        quantized: dict[str, np.ndarray],
    ) -> None:
        for i, ((file, _, info), problem) in enumerate(zip(items, problems, strict=True)):
            if self.should_stop():
                return
            if problem is not None:
                self._record(file, problem)
                continue
            try:
                group_pixels = quantized.get(output_depth(info))
                pixels = None if group_pixels is None else group_pixels[i]
                job = self.job
                data = encode(results[i], info, job.output_format, job.jpeg_quality, True, pixels)
                self.target.write(file.dst, data)
            except ImageError as exc:
                self._record(file, str(exc))
            except Exception as exc:  # an encoder bug must cost one file, not the batch
                self._record(file, f"{type(exc).__name__}: {exc}")
            else:
                self._record(file)

    def _streamed(self, source: PngBands | HeldBands, file: FileJob) -> None:
        """One large image denoised a band at a time (see streamed); nothing recorded when the
        run stopped mid-file (nothing written: the rerun does it). A stop is acted on between
        rows of tiles, not only between files: one large file can take a minute."""
        transform = cast(StreamingTransform, self.transform)  # streams() said it is one

        def denoise_rows(samples: np.ndarray, rows: Callable[[int, int], np.ndarray]):
            bands = transform.denoise_rows(source.height, source.width, samples, rows)
            return self._watched_bands(bands)

        job, needed = self.job, transform.samples_needed()
        try:
            if isinstance(source, PngBands):
                data: bytes | Iterator[bytes] = denoised_png(
                    source, denoise_rows, needed, self.should_stop
                )
            else:
                data = denoised_held(
                    source, denoise_rows, job.output_format, job.jpeg_quality, needed,
                    self.should_stop,
                )  # fmt: skip
            self.target.write(file.dst, data)
        except Stopped:
            return
        except ImageError as exc:
            return self._record(file, str(exc))
        except Exception as exc:  # an encoder bug must cost one file, not the batch
            return self._record(file, f"{type(exc).__name__}: {exc}")
        return self._record(file)

    def _watched_bands(self, bands: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """The transform's result bands, each model step under the watchdog."""
        end = object()
        while True:
            try:
                band = self._model(lambda: next(bands, end))
            except (ImageError, Stopped):  # rows that cannot be decoded, a stop: as they are
                raise
            except ModelTimeout:
                self.stuck = True
                raise ImageError(
                    f"model call took over {self.job.model_timeout:g} s (the model timeout)"
                ) from None
            except Exception as exc:  # onnxruntime failing on this tile size, say
                raise ImageError(model_failure(exc)) from None
            if band is end:
                return
            yield cast(np.ndarray, band)


def model_failure(exc: BaseException, advice: str = "lower --tile or --workers") -> str:
    """One line for a failed model call. Running out of memory (numpy's MemoryError,
    onnxruntime's arena "Failed to allocate ... of size N", CUDA's "out of memory") says so
    and what to lower; other failures keep their start and their end, where onnxruntime
    puts the reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    found = re.search(r"(failed to allocate|out of memory).{0,120}", text, re.I)
    if found or isinstance(exc, MemoryError):
        return f"out of memory ({found.group(0) if found else text[:120]}): {advice}"
    if len(text) > 400:
        text = f"{text[:150]} ... {text[-240:]}"
    return f"model failed: {text}"
