"""Training side of denoise-batch (PyTorch): MNIST data, scenes, model registry, training loop.

Installed as `denoise_train`. Depends on denoise_cli.core only; denoise_export builds on it.
"""

from __future__ import annotations


def main() -> None:
    """`denoise-train`: says what to install (exit 2) rather than crash when torch is absent."""
    from denoise_cli.core.commands import TORCH_INSTALL, run_guarded

    run_guarded("denoise_train.cli", ("torch",), "denoise-train", TORCH_INSTALL)


def __getattr__(name: str):
    """`adapt` and `AdaptSettings` (train/adaptation.py), imported on first use: importing the
    package stays torch-free, so `denoise-train` can say what to install when torch is absent."""
    if name in ("adapt", "AdaptSettings", "AdaptResult"):
        from denoise_train import adaptation

        return getattr(adaptation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
