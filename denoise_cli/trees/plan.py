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
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from denoise_cli.core.atomic import (
    O_CLOEXEC,
    O_DIRECTORY,
    TMP_SUFFIX,
    stale_temporary,
    write_atomic,
)
from denoise_cli.core.errors import ImageError, UsageError
from denoise_cli.core.report import Recorder
from denoise_cli.core.safety import inside
from denoise_cli.files.images import is_image_name, not_image_reason
from denoise_cli.trees.dirfd import DirId, FolderCursor, dir_id, open_root, read_at
from denoise_cli.trees.storage import Storage, file_uri_path, is_uri
from denoise_cli.trees.walk import (
    FileJob,
    Folder,
    Skip,
    check_roots,
    output_names,
    walk_fds,
    walk_local,
)

#: Whether writes can go through directory descriptors here (Linux, macOS, BSDs). Elsewhere
#: (Windows) each output folder is checked by lstat on its path instead: the same refusals,
#: with a window between check and write that descriptors close.
DIR_FD_WRITES = {os.open, os.mkdir, os.rename, os.unlink} <= os.supports_dir_fd and (
    os.listdir in os.supports_fd
)


class SourceTree(Protocol):
    def folders(self) -> Iterator[Folder]: ...

    def path(self, rel: str) -> str: ...

    def read(self, src: str, max_bytes: int | None = None) -> bytes:
        """The whole file; one over `max_bytes` is refused (ImageError) before it is read."""
        ...


class TargetTree(Protocol):
    def existing(self, prefix: str, fresh: bool = False) -> set[str]:
        """Names in output folder `prefix`; `fresh`: as they are now, not as first listed."""
        ...

    def path(self, rel: str) -> str: ...

    def write(self, dst: str, data: bytes | Iterable[bytes]) -> None: ...


def on_disk(target: TargetTree, outputs: list[str]) -> set[str]:
    """Which of `outputs` (none existed when the run was planned) a worker wrote before it was
    lost: writes are atomic renames, so an output that exists is whole. Listing each folder
    also removes the temporary file a killed worker left mid-write (see `existing`)."""
    base, folders = target.path(""), {}
    for dst in outputs:
        folder, _, name = dst[len(base) :].rpartition("/")
        folders.setdefault(f"{folder}/" if folder else "", []).append((dst, name))
    return {
        dst
        for prefix, entries in folders.items()
        for names in [target.existing(prefix, fresh=True)]
        for dst, name in entries
        if name in names
    }


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
        names = output_names(folder.images, output_format, folder.subfolders)
        found = target.existing(folder.prefix)  # also clears a killed run's temporary files
        existing = set() if overwrite else found
        for name in folder.images:
            rel, out_rel = folder.prefix + name, folder.prefix + names[name]
            job = FileJob(source.path(rel), rel, target.path(out_rel))
            recorder.found()
            if names[name] in existing:
                recorder.exists(job)
                continue
            yield job


# --- local trees ----------------------------------------------------------------------------


def input_dirs(root: Path, root_fd: int | None = None) -> frozenset[DirId]:
    """(device, inode) of every folder of the input tree (symlinked folders are not walked),
    listed through descriptors (walk.walk_fds)."""
    if root.is_file():
        return frozenset({dir_id(os.stat(root.parent))})
    found = set()
    for _, entries in walk_fds(root, root_fd):
        if isinstance(entries, str):  # the planner reports unreadable folders
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    found.add(dir_id(entry.stat(follow_symlinks=False)))
    fd = os.dup(root_fd) if root_fd is not None else open_root(os.fspath(root))
    try:
        found.add(dir_id(os.fstat(fd)))
    finally:
        os.close(fd)
    return frozenset(found)


class LocalSource:
    """An input folder (or one file), opened once when the run starts; files are read through
    descriptors of their folders (dirfd), so a file or folder swapped for a symlink or a FIFO
    after the walk is refused, not followed, and a file larger than any image within the
    pixel limit can be is refused before it is read."""

    def __init__(self, root: Path, out_root: Path) -> None:
        self.root, self.out_root = root, out_root
        self.single = root.is_file()
        self.real_root = os.path.realpath(root)
        self._prefix = os.path.join(root, "")
        folder = os.fspath(root.parent if self.single else root)
        self.cursor = FolderCursor(folder, "input folder")
        if DIR_FD_WRITES:
            self.cursor.root_fd()  # now: helpers inherit it, or check theirs against it

    def folders(self) -> Iterator[Folder]:
        fd = self.cursor.root_fd() if DIR_FD_WRITES and not self.single else None
        return walk_local(self.root, self.out_root, fd)

    def path(self, rel: str) -> str:
        # Concatenation, not os.path.join: ~2 us less per file, on the planner's one core.
        return os.fspath(self.root) if self.single else self._prefix + rel

    def size(self, src: str) -> int:
        """Bytes of `src` (lstat: a symlink's own size is enough to size a chunk)."""
        return os.lstat(src).st_size

    def read(self, src: str, max_bytes: int | None = None) -> bytes:
        rel = os.path.basename(src) if self.single else src[len(self._prefix) :]
        folder, _, name = rel.rpartition("/")
        try:
            if not DIR_FD_WRITES:
                return _read_path(src, max_bytes, follow=False)
            return read_at(self.cursor.enter(folder), name, max_bytes)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EMLINK):  # EMLINK: FreeBSD's O_NOFOLLOW
                raise
        # A symlink: the walk accepted it only if it pointed inside the tree; check again now.
        real = os.path.realpath(src)
        if not inside(real, self.real_root):
            raise ImageError("cannot read: now a symlink pointing outside the input tree")
        return _read_path(real, max_bytes, follow=False)


def _read_path(path: str, max_bytes: int | None, follow: bool) -> bytes:
    """Where there are no descriptors to read through (Windows), and for symlinked files."""
    folder, name = os.path.split(path)
    fd = os.open(folder or ".", os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        return read_at(fd, name, max_bytes)
    finally:
        os.close(fd)


class LocalTarget:
    """The output folder, opened once (the user named it, links and all) when the run starts
    or, if it does not exist yet, when the model has loaded (`open`); other processes check
    theirs is that folder (device, inode). Every folder below is created and entered one by one
    from there without following symlinks, and refused when it is a folder of the input
    tree."""

    def __init__(self, root: Path, inputs: frozenset[DirId]) -> None:
        self.root, self.inputs = root, inputs
        self._prefix = os.path.join(root, "")
        self.cursor = FolderCursor(os.fspath(root), "output folder")
        self._checked: tuple[str, str] | None = None  # without descriptors: (folder, its path)
        if DIR_FD_WRITES and root.is_dir():
            self._root(create=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_checked": None}

    @property
    def root_id(self) -> DirId | None:
        return self.cursor.root_id

    def open(self) -> None:
        """Create and open OUT now (before any helper writes), so every process writes into
        the folder this one opened."""
        if DIR_FD_WRITES:
            self._root(create=True)

    def expect(self, root_id: DirId | None) -> None:
        self.cursor.expect(root_id)

    def path(self, rel: str) -> str:
        return self._prefix + rel

    def existing(self, prefix: str, fresh: bool = False) -> set[str]:
        """Names already in an output folder, listed through the same checked descriptors a
        write uses: a symlinked folder has none (and its writes are refused). Temporary files
        that a killed run left behind (kill -9 mid-write) are removed on the way. Always listed
        now (`fresh` or not)."""
        unlink: Callable[[str], None]
        try:
            if DIR_FD_WRITES:
                if not self.root.exists() and not self.cursor.opened:
                    return set()
                fd = self._enter(prefix.rstrip("/"), create=False)
                names, unlink = set(os.listdir(fd)), lambda n: os.unlink(n, dir_fd=fd)
            else:
                path = self._checked_path(prefix.rstrip("/"), create=False)
                names, unlink = set(os.listdir(path)), lambda n: os.unlink(os.path.join(path, n))
        except (OSError, ImageError):
            return set()
        stale = {n for n in names if n.endswith(TMP_SUFFIX) and stale_temporary(n)}
        for name in stale:
            with contextlib.suppress(OSError):
                unlink(name)
        return names - stale

    def write(self, dst: str, data: bytes | Iterable[bytes]) -> None:
        """`dst` from `path()`; its folders are entered through checked descriptors. `data`:
        the bytes, or pieces of them (see write_atomic)."""
        rel = dst[len(self._prefix) :].replace(os.sep, "/")
        folder, name = rel.rpartition("/")[::2]
        try:
            if DIR_FD_WRITES:
                write_atomic(data, name, dir_fd=self._enter(folder))
            else:
                write_atomic(data, os.path.join(self._checked_path(folder), name))
        except OSError as exc:
            raise ImageError(f"cannot write {dst}: {exc.strerror or exc}") from None

    def _root(self, create: bool) -> int:
        opened = self.cursor.opened
        fd = self.cursor.root_fd(create)
        if not opened:
            self._check(fd, "")
        return fd

    def _enter(self, folder: str, create: bool = True) -> int:
        self._root(create)
        return self.cursor.enter(folder, create, self._check)

    def _checked_path(self, folder: str, create: bool = True) -> str:
        """Without descriptors: the folder's path, each part created and checked by lstat."""
        if self._checked is not None and self._checked[0] == folder:
            return self._checked[1]
        if create:
            os.makedirs(self.root, exist_ok=True)
        path = os.fspath(self.root)
        self._check_stat(os.stat(path), "")
        for part in folder.split("/") if folder else ():
            if part in ("", ".", ".."):
                raise ImageError(f"output folder {folder}: not a plain relative path")
            path = os.path.join(path, part)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
                raise ImageError(
                    f"output folder {folder} is a symlink or not a folder; "
                    "outputs never follow links"
                )
            self._check_stat(st, folder)
        self._checked = (folder, path)
        return path

    def _check(self, fd: int, folder: str) -> None:
        self._check_stat(os.fstat(fd), folder)

    def _check_stat(self, st: os.stat_result, folder: str) -> None:
        if not stat.S_ISDIR(st.st_mode) or dir_id(st) in self.inputs:
            where = f"output folder {folder}" if folder else f"output folder {self.root}"
            raise ImageError(f"{where} is a folder of the input tree; inputs are never written")

    def close(self) -> None:
        """Release the descriptors (they are also released when the object goes)."""
        self.cursor.close()


# --- storage URIs -----------------------------------------------------------------------------


class StorageSource:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def folders(self) -> Iterator[Folder]:
        by_dir: dict[str, list[str]] = {}
        skips: dict[str, list[Skip]] = {}
        subfolders: dict[str, set[str]] = {}
        for rel in self.storage.list_files():
            folder, _, name = rel.rpartition("/")
            prefix = f"{folder}/" if folder else ""
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                parent = "".join(f"{p}/" for p in parts[: depth - 1])
                subfolders.setdefault(parent, set()).add(parts[depth - 1])
            if any(part in ("", ".", "..") for part in rel.split("/")):
                skips.setdefault(prefix, []).append(Skip(Path(rel), "not a plain relative path"))
            elif is_image_name(name):
                by_dir.setdefault(prefix, []).append(name)
            else:
                skips.setdefault(prefix, []).append(Skip(Path(rel), not_image_reason(name)))
        for prefix in sorted(set(by_dir) | set(skips)):
            subs = tuple(sorted(subfolders.get(prefix, ())))
            yield Folder(prefix, by_dir.get(prefix, []), skips.get(prefix, []), subfolders=subs)

    def path(self, rel: str) -> str:
        return rel

    def read(self, src: str, max_bytes: int | None = None) -> bytes:
        return self.storage.read(src, max_bytes)


class StorageTarget:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._existing: dict[str, set[str]] | None = None

    def __getstate__(self) -> dict:
        return {"storage": self.storage, "_existing": None}

    def existing(self, prefix: str, fresh: bool = False) -> set[str]:
        """Planning lists the whole tree once (each call is a request); `fresh` lists one
        folder again: what workers wrote since (an actor lost mid-chunk)."""
        if fresh:
            return self.storage.list_folder(prefix)
        if self._existing is None:
            self._existing = {}
            for rel in self.storage.list_files():
                folder, _, name = rel.rpartition("/")
                self._existing.setdefault(f"{folder}/" if folder else "", set()).add(name)
        return self._existing.get(prefix, set())

    def path(self, rel: str) -> str:
        return rel

    def write(self, dst: str, data: bytes | Iterable[bytes]) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):  # stores take whole objects
            data = b"".join(data)
        try:
            self.storage.write(dst, data)
        except OSError as exc:
            raise ImageError(f"cannot write {dst}: {exc}") from None


#: "s3://bucket/x", "gs:/b" (a shell or a Path folds '//'), "local:///x": a scheme, never a
#: folder of ours (a single letter is a Windows drive: "C:/data").
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:/")


def local_location(location: str) -> Path:
    """The local path `run` and `noisify` work on: a file:// URI names one; any other URI is
    refused (as a path it would become a relative folder named 's3:'), `ray` reads them."""
    if (path := file_uri_path(location)) is not None:
        return path
    if _SCHEME.match(location):
        raise UsageError(
            f"{location}: URIs are read and written by `denoise-batch ray` "
            f"(a local folder of that name: ./{location})"
        )
    return Path(location)


def _local_path(location: str | Path) -> str | Path:
    """A file:// URI is a local path (and gets the local rules); other locations as given,
    local paths made absolute so that workers anywhere resolve them the same way."""
    text = str(location)
    if (path := file_uri_path(text)) is not None:
        return path.absolute()
    return text if is_uri(text) else Path(location).absolute()


def refuse_in_memory(target: Storage) -> None:
    """pyarrow's mock:// store lives in one process's memory: what workers wrote there would
    be reported written and be nowhere."""
    if target.in_memory:
        raise UsageError(f"{target.uri}: an in-memory store (each worker has its own); not an OUT")


def check_stores_apart(source: Storage, target: Storage) -> None:
    """Refuse OUT at, inside or around IN in a store, judged on the folders pyarrow opens, not
    on the URIs' text ('s3://b/in?endpoint_override=...' and 's3://b/in/?...', queries in
    another order, 'b//in'). Two stores of one kind count as one store: the same bucket path
    on two endpoints is refused too (rename one side), never written over."""
    if type(source.fs) is not type(target.fs):
        return
    src, dst = (posixpath.normpath("/" + s.root).rstrip("/") for s in (source, target))
    if src == dst:
        raise UsageError(f"{target.uri}: output is the input; choose another")
    if src.startswith(dst + "/"):
        raise UsageError(f"{source.uri}: input is inside the output {target.uri}")
    if dst.startswith(src + "/"):
        raise UsageError(f"{target.uri}: output is inside the input {source.uri}")


def check_roots_uri_out(out_root: Path) -> None:
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"{out_root}: output exists and is not a folder")


def open_trees(in_location: str | Path, out_location: str | Path) -> tuple[SourceTree, TargetTree]:
    """Source and target for two local paths or URIs, refusing combinations that could
    overwrite inputs (raises UsageError before anything is read or written)."""
    in_location, out_location = (_local_path(p) for p in (in_location, out_location))
    remote_in, remote_out = (is_uri(str(p)) for p in (in_location, out_location))
    if remote_in and remote_out:  # two stores (Storage refuses URIs of local folders)
        source, target = Storage(str(in_location)), Storage(str(out_location))
        refuse_in_memory(target)
        check_stores_apart(source, target)
        return StorageSource(source), StorageTarget(target)
    # One side in a store, one local: they cannot overlap, and the local side gets the local
    # rules (no symlinks followed, checked writes).
    if remote_out:
        target = Storage(str(out_location))
        refuse_in_memory(target)
        return LocalSource(Path(in_location), Path(out_location)), StorageTarget(target)
    if remote_in:
        source = Storage(str(in_location))
        check_roots_uri_out(Path(out_location))
        return StorageSource(source), LocalTarget(Path(out_location), frozenset())
    in_root, out_root = Path(in_location), Path(out_location)
    check_roots(in_root, out_root)
    source = LocalSource(in_root, out_root)
    root_fd = source.cursor.root_fd() if DIR_FD_WRITES and not source.single else None
    inputs = input_dirs(in_root, root_fd)
    # OUT reached through a bind mount or another path to an input folder: refuse it now, not
    # file by file (every write would be refused anyway).
    if out_root.is_dir() and dir_id(os.stat(out_root)) in inputs:
        raise UsageError(f"{out_root}: output folder is a folder of the input tree")
    return source, LocalTarget(out_root, inputs)
