"""One large page per format through the runtime: peak memory and time, PNG (streamed a band at
a time) against TIFF, JPEG and WebP (decoded whole by Pillow, then denoised band by band).

Why it exists: the runtime's image library is Pillow (the runtime depends on onnxruntime,
numpy, Pillow and typer only), and Pillow decodes TIFF, JPEG and WebP whole. This measures what
that costs against the streamed PNG on the same page, and, given a Python with pyvips
(`--vips-python`), what a library made for streaming would need to decode the same files a
band at a time: the figure that says whether a new dependency would pay.

Each row runs in its own process; its peak RSS is that process's own (VmHWM at exit, Linux).

    python -m benchmarks.pages [--size 7000] [--model unet_world] [--vips-python /venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.run import machine

FORMATS = {"PNG": ".png", "TIFF (LZW)": ".tif", "JPEG (q90)": ".jpg", "WebP (q90)": ".webp"}
_SAVE = {
    ".png": {"compress_level": 1},
    ".tif": {"compression": "tiff_lzw"},
    ".jpg": {"quality": 90},
    ".webp": {"quality": 90},
}

# The child's own peak RSS (kB) on stderr's last line, whatever the command did. VmHWM, not
# getrusage: ru_maxrss keeps the forking parent's peak across exec, and would floor every row
# at this script's own size.
_PEAK = (
    "import sys; print('peak', [l.split()[1] for l in open('/proc/self/status') "
    "if l.startswith('VmHWM')][0], file=sys.stderr)"
)

_RUNTIME = """
import sys
from denoise_cli.cli import main
sys.argv = ["denoise-batch", *sys.argv[1:]]
try:
    main()
finally:
    {peak}
"""

_PILLOW_DECODE = """
import sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
with Image.open(sys.argv[1]) as im:
    im.load()
{peak}
"""

_VIPS_DECODE = """
import sys
import pyvips
im = pyvips.Image.new_from_file(sys.argv[1], access="sequential")
region = pyvips.Region.new(im)
for y in range(0, im.height, 128):
    region.fetch(0, y, im.width, min(128, im.height - y))
{peak}
"""


def page(size: int, seed: int = 0) -> np.ndarray:
    """A noisy size x size page: rows of bright strokes on black under Gaussian 0.5."""
    rng = np.random.default_rng(seed)
    clean = np.zeros((size, size), np.float32)
    for y in range(0, size - 60, 140):
        clean[y + 40 : y + 60, 100 : size - 100 : 3] = 1.0
    noisy = np.clip(clean + 0.5 * rng.standard_normal((size, size), dtype=np.float32), 0, 1)
    return (noisy * 255 + 0.5).astype(np.uint8)


def run_child(python: str, script: str, args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one child process running `script`."""
    code = script.format(peak=_PEAK)
    start = time.perf_counter()
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = [line for line in done.stderr.splitlines() if line.startswith("peak ")]
    if not peak:
        raise RuntimeError(f"{args}: no peak reported (exit {done.returncode}): {done.stderr}")
    if done.returncode:
        raise RuntimeError(f"{args}: exit {done.returncode}: {done.stderr[-2000:]}")
    return int(peak[-1].split()[1]) / 1024, seconds


def measure(size: int, model: str, vips_python: str | None, work: Path) -> list[dict]:
    pixels = Image.fromarray(page(size))
    rows = []
    for name, suffix in FORMATS.items():
        folder = work / suffix.lstrip(".")
        (folder / "in").mkdir(parents=True)
        source = folder / "in" / f"page{suffix}"
        pixels.save(source, **_SAVE[suffix])
        row = {"format": name, "file MB": source.stat().st_size / 1e6}
        out = folder / "out"
        cli = [str(folder / "in"), str(out), "--model", model, "--quiet"]
        row["runtime MB"], row["runtime s"] = run_child(sys.executable, _RUNTIME, cli)
        if not any(out.iterdir()):
            raise RuntimeError(f"{name}: the runtime wrote nothing")
        row["Pillow decode MB"], _ = run_child(sys.executable, _PILLOW_DECODE, [str(source)])
        if vips_python:
            row["pyvips decode MB"], _ = run_child(vips_python, _VIPS_DECODE, [str(source)])
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    base = rows[0]
    columns = list(rows[0])
    lines = [
        "| " + " | ".join(columns) + " | runtime MB vs PNG |",
        "|---" + "|---:" * (len(columns) - 1) + "|---:|",
    ]
    for row in rows:
        cells = [row["format"]] + [
            f"{row[c]:.1f}" if c.endswith("MB") else f"{row[c]:.2f}" for c in columns[1:]
        ]
        lines.append(
            "| " + " | ".join(cells) + f" | {row['runtime MB'] / base['runtime MB']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=7000, help="side of the square page, px")
    parser.add_argument("--model", default="unet_world")
    parser.add_argument("--vips-python", help="a Python with pyvips, for the decode-only column")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        rows = measure(args.size, args.model, args.vips_python, Path(work))
    print(json.dumps(machine()))
    print(f"{args.size}x{args.size} noisy page, model {args.model}\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
