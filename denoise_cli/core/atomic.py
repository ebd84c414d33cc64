"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from pathlib import Path

#: Suffix of in-flight temporary files; a leftover one (after kill -9) is never an output.
TMP_SUFFIX = ".denoise-tmp"
#: Bytes of the destination's name kept in the temporary name: 255 minus the dot, pid, thread
#: id, counter and suffix (at most ~60 bytes).
MAX_KEPT_NAME_BYTES = 180

_tmp_counter = itertools.count()
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def write_atomic(data: bytes, dest: str | Path) -> None:
    """Write `data` to `dest` through a temporary file in the same folder and an atomic rename.

    A crash or Ctrl-C leaves either the old file or the new one, never a partial file. The
    temporary name is unique per process and thread, and created with O_EXCL, so the file gets
    the user's usual permissions (umask), unlike mkstemp's 0600. Plain system calls, not a
    Python file object: measured 16.5 us per small file here against 29 us.
    """
    folder, name = os.path.split(os.fspath(dest))
    # The temporary name must fit the file system's 255-byte limit whatever `name` is: keep a
    # prefix of it (for a person looking at a folder mid-run), cut on a character boundary.
    stem = os.fsencode(name)[:MAX_KEPT_NAME_BYTES].decode(errors="ignore")
    tmp = os.path.join(
        folder,
        f".{stem}.{os.getpid()}-{threading.get_ident()}-{next(_tmp_counter)}{TMP_SUFFIX}",
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC | _O_BINARY
    try:
        fd = os.open(tmp, flags, 0o666)  # inside the try: a Ctrl-C right after must clean up
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
