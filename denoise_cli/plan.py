"""Where a run reads and writes, and which files it does: one planner over local trees and URIs.

A source tree lists folders (walk.Folder); a target tree says which outputs exist already and
writes results. `plan` applies the same rules to both kinds (names, mirroring, skips, resume), so
the local runners and the Ray runner do the same work by construction.

Local trees are where inputs are at risk, so their writes are decided by what the file system
says, not by comparing path strings: every directory of the input tree is known by (device,
inode) before any write, and the output tree is entered one folder at a time through directory
descriptors opened with O_NOFOLLOW. A symlinked folder inside OUT, a bind mount of an input
folder, or OUT reached through another path to IN is refused, whichever way it was set up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from denoise_cli.core.atomic import O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, write_atomic
from denoise_cli.errors import ImageError, UsageError
from denoise_cli.images import is_image_name, read_file
from denoise_cli.report import Recorder
from denoise_cli.storage import Storage, is_uri
from denoise_cli.walk import FileJob, Folder, Skip, check_roots, output_names, walk_local

DirId = tuple[int, int]  # (st_dev, st_ino)
_DIR_NOFOLLOW = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC


class SourceTree(Protocol):
    def folders(self) -> Iterator[Folder]: ...

    def path(self, rel: str) -> str: ...

    def read(self, src: str) -> bytes: ...


class TargetTree(Protocol):
    def existing(self, prefix: str) -> set[str]: ...

    def path(self, rel: str) -> str: ...

    def write(self, dst: str, data: bytes) -> None: ...


def plan(
    source: SourceTree,
    target: TargetTree,
    output_format: str,
    overwrite: bool,
    recorder: Recorder,
) -> Iterator[FileJob]:
    """Jobs still to do, in the walk's order; skips, unreadable folders and finished outputs are
    recorded on the way."""
    for folder in source.folders():
        if folder.error is not None:
            recorder.failed(folder.prefix.rstrip("/") or ".", folder.error)
            continue
        for skip in folder.skips:
            recorder.skipped(str(skip.path), skip.reason)
        if not folder.images:
            continue
        names = output_names(folder.images, output_format)
        existing = set() if overwrite else target.existing(folder.prefix)
        for name in folder.images:
            rel, out_rel = folder.prefix + name, folder.prefix + names[name]
            job = FileJob(source.path(rel), rel, target.path(out_rel))
            recorder.found()
            if names[name] in existing:
                recorder.exists(job)
                continue
            yield job


# --- local trees ----------------------------------------------------------------------------


def _dir_id(st: os.stat_result) -> DirId:
    return st.st_dev, st.st_ino


def input_dirs(root: Path) -> frozenset[DirId]:
    """(device, inode) of every folder of the input tree (symlinked folders are not walked)."""
    if root.is_file():
        return frozenset({_dir_id(os.stat(root.parent))})
    found = {_dir_id(os.stat(root))}
    pending = [os.fspath(root)]
    while pending:
        try:
            with os.scandir(pending.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        found.add(_dir_id(entry.stat(follow_symlinks=False)))
                        pending.append(entry.path)
        except OSError:  # the planner reports unreadable folders; none of their files is read
            continue
    return frozenset(found)


class LocalSource:
    """An input folder (or one file). Reads open with O_NOFOLLOW|O_NONBLOCK and check what they
    opened, so a file swapped for a symlink or a FIFO after the walk is refused, not followed."""

    def __init__(self, root: Path, out_root: Path) -> None:
        self.root, self.out_root = root, out_root
        self.single = root.is_file()
        self.real_root = os.path.realpath(root)

    def folders(self) -> Iterator[Folder]:
        return walk_local(self.root, self.out_root)

    def path(self, rel: str) -> str:
        return os.fspath(self.root) if self.single else os.path.join(self.root, rel)

    def read(self, src: str) -> bytes:
        try:
            return read_file(src, follow=False)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EMLINK):  # EMLINK: FreeBSD's O_NOFOLLOW
                raise
        # A symlink: the walk accepted it only if it pointed inside the tree; check again now.
        real = os.path.realpath(src)
        if not _inside(real, self.real_root):
            raise ImageError("cannot read: now a symlink pointing outside the input tree")
        return read_file(real, follow=False)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class LocalTarget:
    """The output folder. Folders are created and entered one by one without following
    symlinks, and refused when they are folders of the input tree."""

    def __init__(self, root: Path, inputs: frozenset[DirId]) -> None:
        self.root, self.inputs = root, inputs
        self._folder: tuple[str, int] | None = None  # (relative folder, its open descriptor)

    def __getstate__(self) -> dict:
        return {"root": self.root, "inputs": self.inputs, "_folder": None}  # fds stay here

    def __del__(self) -> None:
        self._close()

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def existing(self, prefix: str) -> set[str]:
        try:
            return set(os.listdir(os.path.join(self.root, prefix)))
        except OSError:
            return set()

    def write(self, dst: str, data: bytes) -> None:
        """`dst` from `path()`; its folders are entered through checked descriptors."""
        rel = dst[len(os.path.join(self.root, "")) :].replace(os.sep, "/")
        folder, name = rel.rpartition("/")[::2]
        try:
            fd = self._enter(folder)
            write_atomic(data, name, dir_fd=fd)
        except OSError as exc:
            raise ImageError(f"cannot write {dst}: {exc.strerror or exc}") from None

    def _enter(self, folder: str) -> int:
        if self._folder is not None and self._folder[0] == folder:
            return self._folder[1]
        self._close()
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)  # the user named it
        try:
            self._check(fd, "")
            for part in folder.split("/") if folder else ():
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                try:
                    sub = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise ImageError(
                            f"output folder {folder} is a symlink or not a folder; "
                            "outputs never follow links"
                        ) from None
                    raise
                os.close(fd)
                fd = sub
                self._check(fd, folder)
        except BaseException:
            os.close(fd)
            raise
        self._folder = (folder, fd)
        return fd

    def _check(self, fd: int, folder: str) -> None:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode) or _dir_id(st) in self.inputs:
            where = f"output folder {folder}" if folder else f"output folder {self.root}"
            raise ImageError(f"{where} is a folder of the input tree; inputs are never written")

    def _close(self) -> None:
        if self._folder is not None:
            os.close(self._folder[1])
            self._folder = None


# --- storage URIs -----------------------------------------------------------------------------


class StorageSource:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def folders(self) -> Iterator[Folder]:
        by_dir: dict[str, list[str]] = {}
        skips: dict[str, list[Skip]] = {}
        for rel in self.storage.list_files():
            folder, _, name = rel.rpartition("/")
            prefix = f"{folder}/" if folder else ""
            if is_image_name(name):
                by_dir.setdefault(prefix, []).append(name)
            else:
                skips.setdefault(prefix, []).append(Skip(Path(rel), "not an image file"))
        for prefix in sorted(set(by_dir) | set(skips)):
            yield Folder(prefix, by_dir.get(prefix, []), skips.get(prefix, []))

    def path(self, rel: str) -> str:
        return rel

    def read(self, src: str) -> bytes:
        return self.storage.read(src)


class StorageTarget:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._existing: dict[str, set[str]] | None = None

    def __getstate__(self) -> dict:
        return {"storage": self.storage, "_existing": None}

    def existing(self, prefix: str) -> set[str]:
        if self._existing is None:  # one listing for the whole tree: each call is a request
            self._existing = {}
            for rel in self.storage.list_files():
                folder, _, name = rel.rpartition("/")
                self._existing.setdefault(f"{folder}/" if folder else "", set()).add(name)
        return self._existing.get(prefix, set())

    def path(self, rel: str) -> str:
        return rel

    def write(self, dst: str, data: bytes) -> None:
        try:
            self.storage.write(dst, data)
        except OSError as exc:
            raise ImageError(f"cannot write {dst}: {exc}") from None


def open_trees(in_location: str | Path, out_location: str | Path) -> tuple[SourceTree, TargetTree]:
    """Source and target for two local paths or URIs, refusing combinations that could
    overwrite inputs (raises UsageError before anything is read or written)."""
    if is_uri(str(in_location)) or is_uri(str(out_location)):
        source, target = (
            Storage(str(p) if is_uri(str(p)) else Path(p).resolve().as_uri())
            for p in (in_location, out_location)
        )
        src_uri, dst_uri = source.uri.rstrip("/"), target.uri.rstrip("/")
        if src_uri == dst_uri:
            raise UsageError(f"{target.uri}: output is the input; choose another")
        if src_uri.startswith(dst_uri + "/"):
            raise UsageError(f"{source.uri}: input is inside the output {target.uri}")
        if dst_uri.startswith(src_uri + "/"):
            raise UsageError(f"{target.uri}: output is inside the input {source.uri}")
        return StorageSource(source), StorageTarget(target)
    in_root, out_root = Path(in_location), Path(out_location)
    check_roots(in_root, out_root)
    inputs = input_dirs(in_root)
    # OUT reached through a bind mount or another path to an input folder: refuse it now, not
    # file by file (every write would be refused anyway).
    if out_root.is_dir() and _dir_id(os.stat(out_root)) in inputs:
        raise UsageError(f"{out_root}: output folder is a folder of the input tree")
    return LocalSource(in_root, out_root), LocalTarget(out_root, inputs)
