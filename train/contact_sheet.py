"""A PNG of before/after crops, so a user sees what adaptation did without opening a viewer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from denoise_cli.core.atomic import write_atomic


def contact_sheet(
    columns: list[np.ndarray],
    path: Path,
    gap: int = 2,
    scale: int = 2,
    text: dict[str, str] | None = None,
) -> Path:
    """One row per crop, one column per array of `columns` (each (N, 1, S, S) in [0, 1]):
    e.g. noisy | starting model | adapted [| clean]. Written atomically; `text` goes into PNG
    text chunks (how a later run knows the sheet for its own)."""
    n, side = len(columns[0]), columns[0].shape[-1]
    cell = side + gap
    sheet = np.ones((n * cell + gap, len(columns) * cell + gap), np.float32)
    for c, images in enumerate(columns):
        for r in range(n):
            y, x = gap + r * cell, gap + c * cell
            sheet[y : y + side, x : x + side] = images[r, 0]
    im = Image.fromarray(np.round(np.clip(sheet, 0, 1) * 255).astype(np.uint8), "L")
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    import io

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", pnginfo=info)
    write_atomic(buffer.getvalue(), path)
    return path
