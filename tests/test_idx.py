"""The IDX reader and MNIST loading: good files, and broken ones with one-line errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from denoise_train.idx import IdxError, encode_idx, parse_idx, read_idx
from denoise_train.mnist import load_split

IMAGES = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_reads_what_was_written(tmp_path, compress):
    data = encode_idx(IMAGES)
    path = tmp_path / ("x.gz" if compress else "x")
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 28, 28)
    np.testing.assert_array_equal(out, IMAGES)


def test_header_fields_are_big_endian():
    data = encode_idx(IMAGES)
    assert data[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", data[4:16]) == (2, 28, 28)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"\x12\x34" + d[2:], "bad IDX magic number"),
        (lambda d: d[:-10], "truncated: header declares shape (2, 28, 28)"),
        (lambda d: d + b"\x00", "has trailing bytes"),
        (lambda d: d[:6], "truncated header"),
        (lambda d: d[:3], "too short"),
    ],
    ids=["magic", "truncated-data", "trailing", "truncated-header", "tiny"],
)
def test_broken_files_name_file_and_problem(tmp_path, mutate, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(mutate(encode_idx(IMAGES)))
    with pytest.raises(IdxError) as err:
        read_idx(path)
    text = str(err.value)
    assert str(path) in text and message in text
    assert "\n" not in text


def test_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(encode_idx(IMAGES))[:-20])
    with pytest.raises(IdxError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(IdxError, match="file not found"):
        read_idx(tmp_path / "nope")


def test_parse_rejects_unknown_type():
    with pytest.raises(IdxError, match="magic"):
        parse_idx(b"\x00\x00\x07\x01\x00\x00\x00\x00")


def test_load_split_scales_and_shapes(tiny_mnist):
    images, labels = load_split("train", tiny_mnist, download=False)
    assert images.shape == (600, 1, 28, 28) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() == 1.0
    assert labels.shape == (600,) and labels.dtype == np.int64


def test_label_count_mismatch_is_reported(tmp_path, tiny_mnist):
    for f in tiny_mnist.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    labels = np.zeros(599, np.uint8)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
    with pytest.raises(IdxError, match=r"600 images but train-labels-idx1-ubyte\.gz has 599"):
        load_split("train", tmp_path, download=False)


def test_wrong_image_size_is_reported(tmp_path, tiny_mnist):
    for f in tiny_mnist.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    bad = np.zeros((100, 32, 32), np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(encode_idx(bad)))
    with pytest.raises(IdxError, match="expected 28x28 images, got 32x32"):
        load_split("test", tmp_path, download=False)


def test_full_size_file_with_wrong_content_is_refused(tmp_path, tiny_mnist):
    """A file claiming the 10,000 test digits must carry the real ones (content digest)."""
    for f in tiny_mnist.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    fake = np.zeros((10_000, 28, 28), np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(encode_idx(fake))  # raw, no .gz
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(encode_idx(np.zeros(10_000, np.uint8)))
    )
    with pytest.raises(IdxError, match="content differs from the MNIST release"):
        load_split("test", tmp_path, download=False)


def test_missing_files_without_download(tmp_path):
    from denoise_train.mnist import MnistError

    with pytest.raises(MnistError, match="missing and downloading is disabled"):
        load_split("test", tmp_path, download=False)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    from denoise_train.mnist import ENV_VAR, resolve_data_dir

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(None) == tmp_path / "cache" / "denoise-batch" / "mnist"
