"""The one rule for every single file a command writes (a report, `score --json`, a checkpoint,
an export): never inside an input tree, never onto anything but a regular file or a new name,
never through a symlink.

Every command calls `check_output_file` on its output paths before any work, and writes them with
`write_output_file`, which checks again through a descriptor of the folder (a path swapped after
the first check cannot redirect the write) and replaces the name by an atomic rename, so a
device, a FIFO or a link planted at the name is replaced as a name, never written through.
(Images are written by plan.LocalTarget under the same rule, folder by folder.)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from denoise_cli.core.atomic import O_CLOEXEC, O_DIRECTORY, write_atomic
from denoise_cli.core.errors import UsageError


def inside(path: str, root: str) -> bool:
    """Whether the path `path` is `root` or below it (both already resolved: realpath)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _refusal(path: Path, st: os.stat_result | None) -> str | None:
    """Why the entry `st` (lstat of `path`, None: no such name) cannot be replaced."""
    if st is None or stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{path}: is a symlink; outputs are never written through links"
    if stat.S_ISDIR(st.st_mode):
        return f"{path}: is a folder; name a file"
    return f"{path}: is not a regular file (a device, pipe or socket); name a file"


def _lstat(path: str | Path, dir_fd: int | None = None) -> os.stat_result | None:
    try:
        return os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):  # a new name (or a folder that cannot be)
        return None


def check_output_file(path: str | Path, inputs: Iterable[str | Path] = (), what: str = "") -> None:
    """Raise UsageError unless `path` may be written: a regular file or a new name, not a link,
    not inside (or equal to) any of `inputs` (folders or files the command reads). `what`
    names the output in the message ("the report", "--json")."""
    path = Path(path)
    label = f"{what} " if what else ""
    why = _refusal(path, _lstat(path))
    if why is not None:
        raise UsageError(f"{label}{why}".strip())
    real = resolved(path)
    for location in inputs:
        if "://" in str(location):
            continue
        real_in = os.path.realpath(location)
        if inside(real, real_in):
            raise UsageError(f"{label}{path}: would be written inside the input {location}")
    if (why := _unwritable_folder(path)) is not None:
        raise UsageError(f"{label}{path}: {why}")


def resolved(path: str | Path) -> str:
    """Where writing `path` lands: its folder resolved (links and all), its own name kept (a
    link there is refused, never followed)."""
    path = Path(path)
    return os.path.join(os.path.realpath(path.parent), path.name)


def _unwritable_folder(path: Path) -> str | None:
    """Why `path`'s folder (or the nearest one that exists, where it would be made) cannot
    take a new file, or None: found before the work, not after hours of training."""
    folder = path.parent.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {folder} is not writable here"
    return None


def write_output_file(
    path: str | Path, data: bytes, inputs: Iterable[str | Path] = (), what: str = ""
) -> None:
    """Write `data` to `path` whole (atomic rename) under check_output_file's rule, checked
    again through the folder's descriptor just before the rename. Creates the folder. Raises
    UsageError for a refused path, OSError for a failed write."""
    path = Path(path)
    check_output_file(path, inputs, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        why = _refusal(path, _lstat(path.name, dir_fd=folder))
        if why is not None:
            raise UsageError(f"{what} {why}".strip())
        write_atomic(data, path.name, dir_fd=folder)
    finally:
        os.close(folder)
