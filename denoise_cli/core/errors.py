"""The exceptions every part of denoise-batch raises, and the one exit-code policy of its commands.

Library code raises these with a one-line message a user can act on (naming the file, value or
setting, never a command-line flag: Python API users have none); only the command-line layer
(denoise_cli.core.commands) turns them into a message and an exit code.
"""

from __future__ import annotations

#: Exit codes, the same for denoise-batch, denoise-train and denoise-export.
EXIT_OK = 0  # everything asked for was done
EXIT_FAILED = 1  # the work ran, and some of it failed (files, checks); the rest was done
EXIT_USAGE = 2  # the arguments cannot work, or a needed package is not installed
EXIT_REFUSED = 3  # a model, checkpoint, device or data set was missing or refused before work began
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): work stopped cleanly; a rerun continues
EXIT_TERMINATED = 143  # SIGTERM: the same, asked for by a process manager

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 some work failed (the rest was done); 2 usage error or missing "
    "package; 3 model, checkpoint, device or data missing or refused; 130 interrupted; "
    "143 terminated; 129 hung up (denoise-batch)."
)


class DenoiseError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = EXIT_FAILED


class UsageError(DenoiseError, ValueError):
    """The arguments cannot work (input missing, output equal to input, a bad setting...).

    Also a ValueError, so code that validated with ValueError keeps catching it.
    """

    exit_code = EXIT_USAGE


class MissingDependency(UsageError):
    """An optional package (torch, onnx, ray...) that this command needs is not installed."""


class RefusedError(DenoiseError):
    """A model, checkpoint, device or data set cannot be used; nothing was done with it."""

    exit_code = EXIT_REFUSED


class WorkFailed(DenoiseError):
    """The work ran and part of it failed (a verification check, a file)."""

    exit_code = EXIT_FAILED


# The runtime's own: a model refused, one file failed, a run interrupted.
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
