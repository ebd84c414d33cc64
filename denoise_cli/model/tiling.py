"""Overlapping tiles, so images of any size run with bounded memory (or through fixed-size models).

Each tile is processed whole, but only its interior is kept: pixels within `overlap` of a tile
edge that is not an image edge are taken from the neighbouring tile instead. For a
convolutional model whose receptive-field radius is at most `overlap` (the seed model's is 5
pixels) the stitched result equals the whole-image result exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from denoise_cli.model.info import ModelInfo


@dataclass(frozen=True)
class Tile:
    y: int  # where the tile is cut from the image
    x: int
    keep_y0: int  # the part of the image this tile is trusted for
    keep_y1: int
    keep_x0: int
    keep_x1: int


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = max(1, tile - 2 * overlap)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _keep(start: int, tile: int, length: int, overlap: int, prev_end: int) -> tuple[int, int]:
    lo = start + overlap if start > 0 else 0
    hi = start + tile - overlap if start + tile < length else length
    return max(lo, prev_end), hi


def plan_tiles(height: int, width: int, tile_h: int, tile_w: int, overlap: int) -> list[Tile]:
    """Tiles covering a height x width image; the kept regions partition it exactly."""
    if overlap * 2 >= min(tile_h, tile_w):
        raise ValueError(f"overlap {overlap} too large for tile {tile_h}x{tile_w}")
    tiles = []
    y_end = 0
    for y in _starts(height, tile_h, overlap):
        y0, y1 = _keep(y, min(tile_h, height), height, overlap, y_end)
        x_end = 0
        for x in _starts(width, tile_w, overlap):
            x0, x1 = _keep(x, min(tile_w, width), width, overlap, x_end)
            tiles.append(Tile(y, x, y0, y1, x0, x1))
            x_end = x1
        y_end = y1
    return tiles


def run_tiled(
    image: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    tile_h: int,
    tile_w: int,
    overlap: int,
    tiles_per_call: int = 16,
    multiple: int = 1,
) -> np.ndarray:
    """Apply `run` ((N, 1, th, tw) -> same shape) to a 2-D image tile by tile and stitch.

    `multiple`: for models that downsample (U-Nets), tile sizes, overlaps and positions are
    multiples of it and the image is padded to one, so every tile sees the pooling grid the
    whole image would.
    """
    height, width = image.shape

    def rows(y0: int, y1: int) -> np.ndarray:
        return image[y0:y1]

    bands = tiled_rows(height, width, rows, run, tile_h, tile_w, overlap, tiles_per_call, multiple)
    return np.concatenate(list(bands)) if height else np.empty((0, width), np.float32)


def tiled_rows(
    height: int,
    width: int,
    rows: Callable[[int, int], np.ndarray],
    run: Callable[[np.ndarray], np.ndarray],
    tile_h: int,
    tile_w: int,
    overlap: int,
    tiles_per_call: int = 16,
    multiple: int = 1,
) -> Iterator[np.ndarray]:
    """`run_tiled` for an image read a band at a time: `rows(y0, y1)` gives its rows y0..y1
    (y0 never decreases between calls, so a reader can drop what is above); yields the result
    top to bottom, one row of tiles' kept rows at a time. Memory: a row of tiles, not the image.
    A model call takes up to `tiles_per_call` tiles of one row: on CPU the pixel budget allows one
    1024-pixel tile per call anyway; on GPU an image one or two tiles wide makes smaller
    batches than it could (whole images of that size still batch across files).
    """
    # The image is padded to at least one tile and to the size multiple by repeating its last
    # row and column (zeros drew a dark line along a light edge), and cropped back afterwards.
    h = max(tile_h, -(-height // multiple) * multiple)
    w = max(tile_w, -(-width // multiple) * multiple)
    tiles = plan_tiles(h, w, tile_h, tile_w, overlap)
    th, tw = min(tile_h, h), min(tile_w, w)
    last_row = None
    for y, group in itertools.groupby(tiles, key=lambda t: t.y):
        row_tiles = list(group)
        src = np.empty((th, w), np.float32)
        real = rows(y, min(y + th, height)) if y < height else last_row
        src[: len(real), :width] = real
        src[len(real) :, :width] = real[-1]
        src[:, width:] = src[:, width - 1 : width]
        last_row = real[-1:]
        band = np.empty((row_tiles[0].keep_y1 - row_tiles[0].keep_y0, w), np.float32)
        for i in range(0, len(row_tiles), tiles_per_call):
            part = row_tiles[i : i + tiles_per_call]
            batch = np.stack([src[:, t.x : t.x + tw] for t in part])[:, None]
            result = run(np.ascontiguousarray(batch, dtype=np.float32))
            for t, r in zip(part, result[:, 0], strict=True):
                band[:, t.keep_x0 : t.keep_x1] = r[
                    t.keep_y0 - y : t.keep_y1 - y, t.keep_x0 - t.x : t.keep_x1 - t.x
                ]
        first = row_tiles[0].keep_y0
        if first < height:
            yield band[: min(band.shape[0], height - first), :width]


def mirror_index(index: np.ndarray, length: int) -> np.ndarray:
    """Positions outside 0..length-1 mirrored back in, the edge pixel repeated (numpy's
    "symmetric" padding), however far out: a constant image stays constant, and what lies
    past an edge looks like what lies inside it, as a model saw inside its training images."""
    folded = index % (2 * length)
    return np.where(folded < length, folded, 2 * length - 1 - folded)


def mirrored_rows(
    rows: Callable[[int, int], np.ndarray], height: int, width: int, border: int
) -> Callable[[int, int], np.ndarray]:
    """A row reader (see tiled_rows) for the image mirrored `border` pixels out on every side,
    from one for the image itself. The first row it asks `rows` for never decreases while
    the padded image's does not, provided tiles are taller than twice `border`."""
    cols = mirror_index(np.arange(-border, width + border), width)

    def read(y0: int, y1: int) -> np.ndarray:
        index = mirror_index(np.arange(y0 - border, y1 - border), height)
        lo = int(index.min())
        return rows(lo, int(index.max()) + 1)[index - lo][:, cols]

    return read


def cropped_bands(
    bands: Iterator[np.ndarray], border: int, height: int, width: int
) -> Iterator[np.ndarray]:
    """The bands of a mirrored image (see mirrored_rows), top to bottom, less the mirror."""
    y = 0  # the padded image's row at which the next band starts
    for band in bands:
        lo, hi = max(border - y, 0), min(len(band), border + height - y)
        if lo < hi:
            yield band[lo:hi, border : border + width]
        y += len(band)


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
