"""Reader for the IDX format of the MNIST files, gzipped or raw, validated before use.

Format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number 0x00 0x00 <type> <ndim>,
then ndim big-endian uint32 dimensions, then the data. MNIST uses type 0x08 (unsigned byte).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from denoise_cli.core.errors import RefusedError

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxError(RefusedError, ValueError):
    """A file is not a valid IDX file; the message names the file and the problem."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise  # the callers say which file was expected, and why
    except OSError as exc:  # permissions, a folder in the file's place: refused, one line
        raise IdxError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise IdxError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of the declared dtype and shape."""
    if len(data) < 4:
        raise IdxError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _DTYPES or ndim == 0:
        raise IdxError(f"{name}: bad IDX magic number 0x{data[:4].hex()} (not an IDX file?)")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxError(f"{name}: truncated header (needs {header_len} bytes, has {len(data)})")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise IdxError(
            f"{name}: {what}: header declares shape {shape} ({expected} data bytes), "
            f"file has {actual}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a numpy array."""
    path = Path(path)
    try:
        data = _read_bytes(path)
    except FileNotFoundError:
        raise IdxError(f"{path}: file not found") from None
    return parse_idx(data, str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (used to write test fixtures and sample data)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
