"""PNG decode and encode per file: the runtime's own codec (denoise_cli.files.fastpng) beside
Pillow and, where installed, pyspng, imagecodecs and OpenCV, on the files the tool meets most
(noisy 28x28 digits) and on a 512x512 page.

Why it exists: the runtime depends on onnxruntime, numpy, Pillow and typer only, and keeps a
hand-written PNG path for plain 8-bit grey files; that code stays only while no library
measures faster. Each figure is the best of `--rounds` rounds of `--files` files, in
microseconds per file, with its ratio to fastpng's in the same run.

    python -m benchmarks.codecs [--files 3000] [--rounds 3]

The optional libraries need not be in the project's environment: run it with a Python that has
them and this checkout on its path (PYTHONPATH=. /other/venv/bin/python -m benchmarks.codecs).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from denoise_cli.files import fastpng


def _optional() -> dict[str, tuple[Callable, Callable]]:
    """(decode, encode) of each library that imports here."""
    found: dict[str, tuple[Callable, Callable]] = {}
    try:
        import pyspng

        found["pyspng"] = (pyspng.load, None)
    except ImportError:
        pass
    try:
        import imagecodecs

        found["imagecodecs (level 1)"] = (
            imagecodecs.png_decode,
            lambda a: imagecodecs.png_encode(a, level=1),
        )
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        flags = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        found["OpenCV (level 1)"] = (
            lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED),
            lambda a: cv2.imencode(".png", a, flags)[1].tobytes(),
        )
    except ImportError:
        pass
    return found


def _pillow_decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def _pillow_encode(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def codecs() -> dict[str, tuple[Callable | None, Callable | None]]:
    own = (lambda b: fastpng.decode_gray8(b, 1 << 30)[0], fastpng.encode_gray)
    return {
        "fastpng (ours; level 1 to 4 KiB, then 6)": own,
        "fastpng at level 1": (None, lambda a: fastpng.encode_gray(a, level=1)),
        "Pillow (level 1)": (_pillow_decode, _pillow_encode),
        **_optional(),
    }


def best_us(call: Callable, items: list, rounds: int) -> float:
    """Best of `rounds` passes over `items`, microseconds per item."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            call(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def images(count: int, side: int, seed: int = 0, sigma: float = 0.5) -> list[np.ndarray]:
    """Digit-like grey images: a dark frame, a bright stroke, Gaussian noise of `sigma` (0.5:
    what the tool reads; 0.02: what it writes, denoised)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        clean = np.zeros((side, side), np.float32)
        y = rng.integers(side // 4, side // 2)
        clean[y : y + max(2, side // 7), side // 4 : 3 * side // 4] = 1.0
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1)
        out.append((noisy * 255 + 0.5).astype(np.uint8))
    return out


def _cell(value: float | None, ref: float | None) -> tuple[str, str]:
    """A time and its ratio to fastpng's, or dashes where the codec cannot do it."""
    if value is None or ref is None:
        return "-", "-"
    return f"{value:.1f}", f"{value / ref:.2f}x"


def table(files: int, rounds: int) -> list[str]:
    lines = [
        "| case | codec | decode us/file | x fastpng | encode us/file | x fastpng | bytes |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, side, count in (("28x28 digit", 28, files), ("512x512 page", 512, 20)):
        files_png = [fastpng.encode_gray(p) for p in images(count, side)]  # noisy inputs
        pixels = images(count, side, seed=1, sigma=0.02)  # outputs: denoised-like
        base: dict[str, float] = {}
        for name, (decode, encode) in codecs().items():
            dec = best_us(decode, files_png, rounds) if decode else None
            enc = best_us(encode, pixels, rounds) if encode else None
            base.setdefault("dec", dec)
            base.setdefault("enc", enc)

            size = f"{np.mean([len(encode(p)) for p in pixels]):.0f}" if encode else "-"
            lines.append(
                f"| {label} | {name} | {' | '.join(_cell(dec, base['dec']))} | "
                f"{' | '.join(_cell(enc, base['enc']))} | {size} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(table(args.files, args.rounds)))


if __name__ == "__main__":
    main()
