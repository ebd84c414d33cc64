"""Exceptions of the runtime, on top of the shared ones in denoise_cli.core.errors."""

from __future__ import annotations

from denoise_cli.core.errors import DenoiseError, RefusedError, UsageError, WorkFailed

__all__ = [
    "DenoiseError",
    "ImageError",
    "Interrupted",
    "ModelError",
    "ProviderError",
    "UsageError",
]


#: Why an output is not written when the model returned NaN or infinities (it would be black).
NOT_FINITE = "model returned NaN or infinite values; nothing written"


def first_line(exc: BaseException, limit: int = 200) -> str:
    """`Type: first non-empty line of the message`, for a one-line reason from any exception
    (a remote one carries a whole traceback in its message)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:limit] if lines else ''}"


class ModelError(RefusedError):
    """The model is missing, corrupt or incompatible. Refused before any image is touched."""


class ProviderError(RefusedError):
    """The requested execution provider (e.g. CUDA) did not load."""


class ImageError(WorkFailed):
    """One file could not be read, processed or written; the batch goes on without it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run; `report` says what was finished (every written file is
    whole) and `signal_name` which signal stopped it."""

    def __init__(self, report: object, signal_name: str = "SIGINT") -> None:
        super().__init__("interrupted")
        self.report = report
        self.signal_name = signal_name
