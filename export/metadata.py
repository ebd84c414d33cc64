"""What travels inside the ONNX file (`metadata_props`), so the runtime never needs train/ code.

Keys are documented here once; denoise_cli/model/info.py reads the same keys. All values are
strings, as ONNX requires.
"""

from __future__ import annotations

import json
from typing import Any

import onnx

from denoise_cli import __version__
from denoise_cli.core.noise import MIXES
from denoise_train.config import eval_noise

#: Version of this metadata schema; the runtime refuses files from a newer major version.
SCHEMA = "1"


def build_metadata(
    ckpt: dict[str, Any],
    params: int,
    fully_convolutional: bool,
    checkpoint_sha256: str,
    test_metrics: dict[str, float],
    n_test: int,
    variant: str = "fp32",
    size_multiple: int = 1,
    receptive_radius: int = 0,
    task: str = "denoiser",
) -> dict[str, str]:
    """Everything a deployer or the runtime needs to know about the model, as strings."""
    config = ckpt["config"]
    n_train = (
        "full MNIST training set"
        if not config.get("train_limit")
        else (f"first {config['train_limit']} MNIST training images")
    )
    return {
        "denoise_batch.schema": SCHEMA,
        "architecture": ckpt["arch"],
        "architecture_args": _compact(ckpt["arch_args"]),
        "task": task,  # denoiser (noisy -> clean) or autoencoder (clean -> clean)
        "parameters": str(params),
        "fully_convolutional": "true" if fully_convolutional else "false",
        "native_size": "28x28",
        # The wide world draws digits from 8 px: its models beat the 28 px detour from side
        # 13-14 on (denoise_cli/model/scale.py); MNIST's models keep the runtime's rule.
        **({"min_side_as_is": "14"} if config.get("data") == "world" else {}),
        "size_multiple": str(size_multiple),
        "receptive_field_radius": str(receptive_radius),
        "trained_on": f"MNIST ({n_train}, {config['val_size']} held out for validation)"
        + {"scenes": " laid out as scenes", "world": " and the wide world (train/world.py)"}.get(
            config.get("data", "mnist"), ""
        ),
        "train_epochs": str(ckpt["epoch"]),
        "train_noise": config["noise"],
        "train_noise_level": "mixed" if config["noise"] in MIXES else str(config["noise_level"]),
        "test_noise": "{} {}".format(*eval_noise(config)),
        "input_layout": "NCHW, 1 channel, float32",
        "value_range": "0..1",
        # MNIST: white digits on a black background; the wide world trains both polarities.
        "polarity": "either" if config.get("data") == "world" else "light-on-dark",
        "test_psnr_db": f"{test_metrics['psnr']:.4f}",
        "test_ssim": f"{test_metrics['ssim']:.4f}",
        "test_noisy_psnr_db": f"{test_metrics['noisy_psnr']:.4f}",
        "test_images": str(n_test),
        "variant": variant,
        "producer": f"denoise-batch {__version__}",
        "source_checkpoint_sha256": checkpoint_sha256,
    } | ({"trained_as": config["trained_as"]} if "trained_as" in config else {})


def _compact(args: dict[str, Any]) -> str:
    """JSON, so a reader gets the values back with their types."""
    return json.dumps(args, sort_keys=True, separators=(",", ":"))


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's metadata_props with `metadata` (ordered as given)."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "denoise-batch"
    model.producer_version = __version__
    model.doc_string = (
        f"{metadata.get('architecture', '?')} digit denoiser; input 'noisy' (N,1,H,W) float32 "
        f"in 0..1, {metadata.get('polarity', '?')}; output 'denoised' same shape."
    )


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}
