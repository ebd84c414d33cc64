"""What the runtime knows about a model: read from the ONNX file's metadata_props and its I/O.

The keys are written by export/metadata.py. A foreign model without our metadata still runs,
with the conservative defaults below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED_SCHEMA_MAJOR = 1


#: The largest values of size metadata a model may bring (a U-Net needs 4, 8 or 16).
METADATA_LIMITS = {"size_multiple": 256, "receptive_field_radius": 1024, "min_side_as_is": 1024}
#: The largest native side (metadata `native_size`) a model may claim: images under ~0.7 of it
#: are scaled up to it, so a claim of 1,000,000 left every image unchanged and one of 2000
#: doubled the memory of 1,000-1,400 px pages. Ours say 28.
NATIVE_SIDE_LIMIT = 512


@dataclass(frozen=True)
class ModelInfo:
    path: str
    metadata: dict[str, str] = field(default_factory=dict)
    input_name: str = "noisy"
    input_shape: tuple[int | str | None, ...] = ()
    output_name: str = "denoised"

    @property
    def polarity(self) -> str:
        """'light-on-dark' (MNIST), 'dark-on-light', or 'unknown'."""
        return self.metadata.get("polarity", "unknown")

    @property
    def architecture(self) -> str:
        return self.metadata.get("architecture", "unknown")

    @property
    def fixed_batch(self) -> int | None:
        n = self.input_shape[0] if self.input_shape else None
        return n if isinstance(n, int) and n > 0 else None

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """(H, W) when the model only accepts one image size."""
        if len(self.input_shape) != 4:
            return None
        h, w = self.input_shape[2], self.input_shape[3]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            return h, w
        return None

    def _int(self, key: str, default: int) -> int:
        try:
            return max(default, int(self.metadata.get(key, str(default))))
        except ValueError:
            return default

    def out_of_range(self) -> str | None:
        """Why the model's own metadata cannot be trusted (a size multiple of 6000 padded four
        28x28 digits to 1.2 GB), or None."""
        for key, limit in METADATA_LIMITS.items():
            value = self._int(key, 0)
            if value > limit:
                return f"metadata {key}={value} is out of range (at most {limit})"
        if self.native_side > NATIVE_SIDE_LIMIT:
            size = self.metadata["native_size"]
            return (
                f"metadata native_size={size} is out of range (sides at most {NATIVE_SIDE_LIMIT})"
            )
        return None

    @property
    def native_side(self) -> int:
        """The smaller side of the images the model was trained on (metadata `native_size`,
        "28x28"); 28, MNIST's, when the model does not say."""
        try:
            return max(1, min(int(v) for v in self.metadata["native_size"].split("x")))
        except (KeyError, ValueError):
            return 28

    @property
    def min_side_as_is(self) -> int | None:
        """The smallest image side the model denoises as it is, for models that say so
        (metadata `min_side_as_is`: the wide world trains digits from 8 px); None: the
        runtime's rule for MNIST-scale models (scale.RESAMPLE_BELOW)."""
        value = self._int("min_side_as_is", 0)
        return value or None

    @property
    def size_multiple(self) -> int:
        """Height and width the model needs to be multiples of (U-Nets: 4); 1 for any."""
        return self._int("size_multiple", 1)

    @property
    def receptive_radius(self) -> int:
        """How far (pixels) an output pixel sees; tiles overlap at least this much. 0: unknown."""
        return self._int("receptive_field_radius", 0)

    @property
    def test_psnr(self) -> float | None:
        try:
            return float(self.metadata["test_psnr_db"])
        except (KeyError, ValueError):
            return None

    def summary(self) -> str:
        """'unet_scenes (unet_lite_near, PATH, test PSNR 20.51 dB)': the file's name, which is
        what --model takes, then the architecture when the name is another."""
        psnr = f", test PSNR {self.test_psnr:.2f} dB" if self.test_psnr is not None else ""
        variant = self.metadata.get("variant", "")
        variant = f" {variant}" if variant and variant != "fp32" else ""
        name = Path(self.path).name.split(".")[0]
        arch = f"{self.architecture}, " if self.architecture not in (name, "unknown") else ""
        return f"{name}{variant} ({arch}{self.path}{psnr})"
