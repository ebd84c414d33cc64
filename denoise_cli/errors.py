"""Exceptions of the runtime. Library code raises these; only cli.py turns them into exit codes."""

from __future__ import annotations


class DenoiseError(Exception):
    """Base class: the message is one line a user can act on."""


class UsageError(DenoiseError):
    """The arguments cannot work (input missing, output equal to input, ...). Exit code 2."""


class ModelError(DenoiseError):
    """The model is missing, corrupt or incompatible. Refused before any image is touched."""


class ProviderError(DenoiseError):
    """The requested execution provider (e.g. CUDA) did not load."""


class ImageError(DenoiseError):
    """One file could not be read, processed or written; the batch goes on without it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; `report` says what was finished (every written file is whole)."""

    def __init__(self, report: object) -> None:
        super().__init__("interrupted")
        self.report = report
