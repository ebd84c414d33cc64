"""Folders entered through directory descriptors, one name at a time, never following a link.

A run opens IN and OUT once, at its start, and reaches every folder below them from those
descriptors with O_NOFOLLOW|O_DIRECTORY: a folder (or IN or OUT itself) swapped for a symlink
mid-run cannot redirect a read or a write, whichever process does it. A process that has no
descriptor (a spawned helper, a Ray actor) opens the root by its path and checks that it is the
same folder (device and inode) that the run started with. Walking by descriptor also keeps deep
trees linear: no path is resolved again from the root (2,000 nested folders took 92 s of
repeated lookups when every folder was listed and checked by its full path).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

from denoise_cli.core.atomic import O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW
from denoise_cli.core.errors import ImageError

DirId = tuple[int, int]  # (st_dev, st_ino)
DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
#: What opening a symlink with O_NOFOLLOW raises (EMLINK: FreeBSD).
LINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def dir_id(st: os.stat_result) -> DirId:
    return st.st_dev, st.st_ino


def open_root(path: str, expected: DirId | None = None) -> int:
    """A descriptor of the folder `path` (links in the path the user typed are followed);
    `expected`: the (device, inode) it must still have, else ImageError (swapped mid-run)."""
    fd = os.open(path, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if expected is not None and dir_id(os.fstat(fd)) != expected:
        os.close(fd)
        raise ImageError(
            f"{path} is no longer the folder this run started with (swapped for a link or "
            "another folder mid-run); nothing read or written through it"
        )
    return fd


def open_sub(fd: int, name: str, where: str, create: bool = False, kind: str = "folder") -> int:
    """The folder `name` in the folder open as `fd`, never through a link; `where` names it
    (relative to the root) in the error, after `kind` ("output folder")."""
    if name in ("", ".", "..") or "/" in name:
        raise ImageError(f"{kind} {where}: not a plain relative path")
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=fd)
    try:
        return os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in LINK_ERRNOS:
            raise ImageError(
                f"{kind} {where} is a symlink or not a folder; links are never followed"
            ) from None
        raise


def read_at(fd: int, name: str, max_bytes: int | None = None) -> bytes:
    """The whole regular file `name` in the folder `fd`; a link raises OSError(ELOOP), a FIFO
    or device ImageError; a file over `max_bytes` is refused before a byte is read."""
    file = os.open(name, _FILE_FLAGS, dir_fd=fd)
    try:
        st = os.fstat(file)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("cannot read: not a regular file (a pipe, device or folder)")
        if max_bytes is not None and st.st_size > max_bytes:
            raise ImageError(
                f"file is {st.st_size:,} bytes, more than any image within the pixel limit "
                f"can take ({max_bytes:,}); not read (raise --max-pixels to allow it)"
            )
        chunks, size = [], st.st_size
        data = os.read(file, size + 1)  # one byte more: notice a file that grew since fstat
        if len(data) <= size:
            return data
        chunks.append(data)
        limit = max_bytes if max_bytes is not None else float("inf")
        total = len(data)
        while block := os.read(file, 1 << 20):
            chunks.append(block)
            total += len(block)
            if total > limit:
                raise ImageError("cannot read: file grew past the size limit while read")
        return b"".join(chunks)
    finally:
        os.close(file)


class FolderCursor:
    """A root folder and the folder below it last entered (jobs come folder by folder): the
    next folder is entered name by name from the root, or from the last one when it lies below
    it. Pickles without descriptors (a spawned process reopens the root and checks it)."""

    def __init__(self, root: str, kind: str = "folder", root_id: DirId | None = None) -> None:
        self.root, self.kind, self.root_id = root, kind, root_id
        self._root_fd: int | None = None
        self._at: tuple[str, int] | None = None  # (folder relative to the root, its descriptor)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_root_fd": None, "_at": None}

    def __del__(self) -> None:
        self.close()

    @property
    def opened(self) -> bool:
        return self._root_fd is not None

    def root_fd(self, create: bool = False) -> int:
        if self._root_fd is None:
            if create:
                os.makedirs(self.root, exist_ok=True)
            fd = open_root(self.root, self.root_id)
            self.root_id = self.root_id or dir_id(os.fstat(fd))
            self._root_fd = fd
        return self._root_fd

    def expect(self, root_id: DirId | None) -> None:
        """The root's (device, inode) as the process that opened it saw it: a root this process
        opens later must be that folder."""
        if root_id is not None and self.root_id is None:
            self.root_id = root_id

    def enter(
        self, folder: str, create: bool = False, check: Callable[[int, str], None] | None = None
    ) -> int:
        """The descriptor of `folder` ('' the root; '/'-separated), each new part checked by
        `check(fd, folder so far)`. Valid until the next call."""
        if self._at is not None and self._at[0] == folder:
            return self._at[1]
        root = self.root_fd(create)
        start, fd = "", root
        if self._at is not None and folder.startswith(self._at[0] + "/"):
            start, fd = self._at
        base = fd
        done = start
        try:
            for part in folder[len(start) :].lstrip("/").split("/") if folder != start else ():
                done = f"{done}/{part}" if done else part
                sub = open_sub(fd, part, done, create, self.kind)
                if fd not in (root, base):
                    os.close(fd)
                fd = sub
                if check is not None:
                    check(fd, done)
        except BaseException:
            if fd not in (root, base):
                os.close(fd)
            raise
        self._release()
        self._at = (folder, fd)
        return fd

    def _release(self) -> None:
        if self._at is not None:
            if self._at[1] != self._root_fd:
                with contextlib.suppress(OSError):
                    os.close(self._at[1])
            self._at = None

    def close(self) -> None:
        """Release the descriptors (also released when the object goes)."""
        self._release()
        if self._root_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._root_fd)
            self._root_fd = None
