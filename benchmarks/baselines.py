"""The baselines denoise-batch is measured against, each a plain one-process loop.

    python -m benchmarks.baselines naive IN OUT [--model PATH|NAME]   # per file: read, model, write
    python -m benchmarks.baselines floor IN OUT                  # read, decode, encode, write

Written the way a user would write them first (Pillow + onnxruntime, one file at a time), so the
ratios say what the tool buys over doing it by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def _pairs(src: Path, dst: Path):
    for path in sorted(src.rglob("*.png")):
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        yield path, out


def naive(src: Path, dst: Path, model: str | None) -> None:
    import onnxruntime as ort

    from denoise_cli.model.bundled import resolve_model

    session = ort.InferenceSession(str(resolve_model(model)), providers=["CPUExecutionProvider"])
    for path, out in _pairs(src, dst):
        x = np.asarray(Image.open(path).convert("L"), dtype=np.float32)[None, None] / 255.0
        y = session.run(None, {"noisy": x})[0][0, 0]
        Image.fromarray(np.round(y * 255).astype(np.uint8)).save(out)


def floor(src: Path, dst: Path) -> None:
    for path, out in _pairs(src, dst):
        Image.fromarray(np.asarray(Image.open(path))).save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["naive", "floor"])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    if args.kind == "naive":
        naive(args.src, args.dst, args.model)
    else:
        floor(args.src, args.dst)


if __name__ == "__main__":
    main()
