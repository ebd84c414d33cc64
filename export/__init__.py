"""Export side of denoise-batch: checkpoint -> verified, self-contained ONNX files and variants,
and the evaluations that score checkpoints and exported files side by side.

Installed as `denoise_export`. Depends on denoise_train and denoise_cli.core.
"""

from __future__ import annotations

import os

# onnxruntime's telemetry would write under ~/.cache on import (see denoise_cli.model.placement).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def main() -> None:
    """`denoise-export`: says what to install (exit 2) rather than crash when torch is absent."""
    from denoise_cli.core.commands import TORCH_INSTALL, run_guarded

    run_guarded("denoise_export.cli", ("torch", "onnx"), "denoise-export", TORCH_INSTALL)


def train_main() -> None:
    """`denoise-train` with `adapt` (export/train_entry.py); says what to install without torch."""
    from denoise_cli.core.commands import TORCH_INSTALL, run_guarded

    run_guarded("denoise_export.train_entry", ("torch",), "denoise-train", TORCH_INSTALL)


def __getattr__(name: str):
    """`adapt` and `AdaptSettings` (export/adaptation.py), imported on first use, so that
    importing the package stays light."""
    if name in ("adapt", "AdaptSettings", "AdaptResult"):
        from denoise_export import adaptation

        return getattr(adaptation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
