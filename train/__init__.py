"""Training side of denoise-batch (PyTorch): MNIST data, scenes, model registry, training loop.

Installed as `denoise_train`. Depends on denoise_cli.core only; denoise_export builds on it.
"""

from __future__ import annotations


def main() -> None:
    """`denoise-train`: says what to install (exit 2) rather than crash when torch is absent."""
    from denoise_cli.core.commands import TORCH_INSTALL, run_guarded

    run_guarded("denoise_train.cli", ("torch",), "denoise-train", TORCH_INSTALL)
