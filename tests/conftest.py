"""Shared fixtures: real digit images (the bundled MNIST samples), tiny IDX data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import SAMPLES, write_idx_set


@pytest.fixture(scope="session")
def clean_digits() -> np.ndarray:
    """16 real MNIST test digits, float32 (16, 28, 28) in [0, 1], white on black."""
    files = sorted((SAMPLES / "clean").glob("*.png"))
    assert len(files) == 16, "bundled samples missing"
    return np.stack([np.asarray(Image.open(f), dtype=np.float32) / 255.0 for f in files])


@pytest.fixture(scope="session")
def noisy_digits(clean_digits: np.ndarray) -> np.ndarray:
    from denoise_cli.core.noise import add_noise

    return add_noise(clean_digits, "gaussian", 0.5, 123)


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_set(tmp_path_factory.mktemp("tiny-mnist"))
