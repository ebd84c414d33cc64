"""Which files to process, and where each result goes: the input tree mirrored into the output.

Walks lazily, one folder at a time, so memory does not grow with the number of folders.
Names are kept; when a forced output format would make two inputs share one output name
(a.png and a.jpg -> a.png), the file already in that format keeps the name and the others get
their full name plus the new extension (a.jpg.png). Nothing is ever overwritten silently.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from denoise_cli.core.errors import ImageError, UsageError
from denoise_cli.core.safety import inside
from denoise_cli.files.images import is_image_name, not_image_reason
from denoise_cli.trees.dirfd import DirId, dir_id, open_root, open_sub


class FileJob(NamedTuple):
    """One image to process. Paths are plain strings: a run makes millions of jobs and hands
    them to worker processes, and a Path costs microseconds to build and to unpickle (measured:
    13.6 us per job of a chunk's unpickling with Paths, the larger part of the per-file cost)."""

    src: str
    rel: str  # path relative to the input root, '/'-separated, for messages and reports
    dst: str


@dataclass(frozen=True)
class Skip:
    path: Path  # relative to the input root, like FileJob.rel (a single file: its name)
    reason: str


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_roots(in_root: Path, out_root: Path) -> None:
    """Refuse argument combinations that could overwrite inputs or recurse forever."""
    if not in_root.exists():
        raise UsageError(f"{in_root}: {broken_link(in_root) or 'input does not exist'}")
    real_in, real_out = _real(in_root), _real(out_root)
    if out_root.exists() and not out_root.is_dir() and real_out != real_in:
        raise UsageError(f"{out_root}: output exists and is not a folder")
    if in_root.is_file():
        if real_out == real_in:
            raise UsageError(f"{out_root}: output is the input file itself; name a folder")
        if not out_root.exists() and is_image_name(out_root.name):
            # `denoise-batch a.png b.png` made a folder b.png holding b.png/a.png.
            raise UsageError(
                f"{out_root}: OUT is a folder (the result goes to OUT/{in_root.name}), and this "
                "name looks like an image file; name a folder"
            )
        if real_in.parent == real_out:
            raise UsageError(f"{out_root}: output folder is the input file's own folder")
        return
    if real_in == real_out:
        raise UsageError(f"{out_root}: output folder is the input folder; choose another")
    if _inside(real_in, real_out):
        raise UsageError(
            f"{in_root}: input folder is inside the output folder {out_root}; "
            "outputs could overwrite inputs"
        )
    if _inside(real_out, real_in):
        raise UsageError(
            f"{out_root}: output folder is inside the input folder {in_root}; "
            "outputs could overwrite inputs: choose a folder outside it"
        )
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"{out_root}: output exists and is not a folder")


def output_names(
    names: list[str], output_format: str, folders: Collection[str] = ()
) -> dict[str, str]:
    """Output file name for each input image name of one folder; never one of its subfolders'
    names (`folders`), which the output tree holds as folders."""
    if output_format == "keep":
        return {n: n for n in names}  # the input's own names: no file shares a folder's
    ext = "." + output_format
    wanted = {n: os.path.splitext(n)[0] + ext for n in names}
    claims: dict[str, list[str]] = {}
    for name, out in wanted.items():
        claims.setdefault(out, []).append(name)
    result: dict[str, str] = {}
    taken: set[str] = set(folders)
    for out, sources in claims.items():
        for name in sources:
            if len(sources) == 1 or name == out:
                result[name] = out
            else:
                result[name] = name + ext
    # The long form could itself clash with a real file's output (a.jpg.png next to a.jpg):
    # number such leftovers rather than overwrite.
    for name in sorted(result, key=lambda n: (result[n] != n, n)):  # own names first
        out, k = result[name], 1
        while out in taken:
            stem, e = os.path.splitext(result[name])
            out, k = f"{stem}~{k}{e}", k + 1
        result[name] = out
        taken.add(out)
    return result


@dataclass(frozen=True)
class Folder:
    """One listed folder of a source tree: its image names, what was skipped, or why it could
    not be listed (a failure: its images cannot be processed)."""

    prefix: str  # path relative to the root with a trailing '/', or '' for the root
    images: list[str]
    skips: list[Skip]
    error: str | None = None
    subfolders: tuple[str, ...] = ()  # names no output file may take (see output_names)


def broken_link(path: str | os.PathLike[str]) -> str | None:
    """Why the symlink `path` leads nowhere (gone, a loop, not reachable), or None when it is
    not a symlink or its target is there: skipped images say this, not "not a regular file"."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "broken link: a loop of symlinks"
        if exc.errno == errno.ENOENT:
            return "broken link: its target does not exist"
        return f"broken link: {exc.strerror}"
    return None


def walk_local(in_root: Path, out_root: Path, root_fd: int | None = None) -> Iterator[Folder]:
    """The folders under `in_root` in sorted, reproducible order: a folder's files, then its
    subfolders, depth first. Only regular files are images (a FIFO named a.png would block the
    run); symlinks are followed only to files inside the tree; the output folder, if it lies
    inside the input, is not walked. Folders are listed through descriptors (see dirfd):
    `root_fd`, the input folder already open (it is duplicated, not taken)."""
    if in_root.is_file():
        if is_image_name(in_root.name):
            yield Folder("", [in_root.name], [])
        else:
            yield Folder("", [], [Skip(Path(in_root.name), not_image_reason(in_root.name))])
        return
    real_in, base = str(_real(in_root)), os.fspath(in_root)
    try:
        out_id = dir_id(os.stat(out_root))
    except OSError:
        out_id = None
    for prefix, entries in walk_fds(in_root, root_fd, skip=out_id):
        if isinstance(entries, str):
            yield Folder(prefix, [], [], entries)
            continue
        images, skips, subfolders = [], [], []
        for entry in entries:
            path = os.path.join(base, prefix + entry.name)
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(entry.name)
                continue  # walked by walk_fds
            if entry.is_symlink() and (broken := broken_link(path)):
                skips.append(_skip(prefix, entry, broken))
            elif entry.is_symlink() and _is_dir(entry):
                skips.append(_skip(prefix, entry, "symlinked folder not followed"))  # loops
            elif entry.is_symlink() and not inside(os.path.realpath(path), real_in):
                skips.append(_skip(prefix, entry, "symlink pointing outside the input tree"))
            elif not is_image_name(entry.name):
                skips.append(_skip(prefix, entry, not_image_reason(entry.name)))
            elif not _is_regular(entry):
                skips.append(_skip(prefix, entry, "not a regular file (a pipe, device...)"))
            else:
                images.append(entry.name)
        yield Folder(prefix, images, skips, subfolders=tuple(subfolders))


#: Descriptors a walk keeps open at most; deeper folders' are closed and reopened on return.
MAX_OPEN_FOLDERS = 64


@dataclass
class _Frame:
    prefix: str
    fd: int | None
    ident: DirId
    subfolders: list[str]  # still to walk, last first


def walk_fds(
    root: Path, root_fd: int | None = None, skip: DirId | None = None
) -> Iterator[tuple[str, list[os.DirEntry] | str]]:
    """(prefix, sorted entries) of every folder under `root`, depth first, or (prefix, why it
    could not be listed). Each folder is opened from its parent's descriptor with O_NOFOLLOW,
    so the walk costs one open per folder however deep, and a folder swapped for a link is
    not followed. `skip`: a folder (device, inode) not to walk (the output inside the input)."""
    fd = os.dup(root_fd) if root_fd is not None else open_root(os.fspath(root))
    frames: list[_Frame] = []
    try:
        listed = _listing(fd, "")
        if isinstance(listed, str):
            os.close(fd)
            yield "", listed
            return
        yield "", listed[0]
        frames.append(_Frame("", fd, dir_id(os.fstat(fd)), listed[1]))
        while frames:
            top = frames[-1]
            if not top.subfolders:
                _close(top)
                frames.pop()
                continue
            name = top.subfolders.pop()
            prefix = f"{top.prefix}{name}/"
            try:
                sub = open_sub(_reopen(frames), name, prefix.rstrip("/"), kind="input folder")
            except (OSError, ImageError) as exc:
                yield prefix, f"cannot list folder: {getattr(exc, 'strerror', None) or exc}"
                continue
            ident = dir_id(os.fstat(sub))
            if ident == skip:
                os.close(sub)
                continue
            listed = _listing(sub, prefix)
            if isinstance(listed, str):
                os.close(sub)
                yield prefix, listed
                continue
            if not top.subfolders:
                _close(top)  # nothing more to open from there
            yield prefix, listed[0]
            frames.append(_Frame(prefix, sub, ident, listed[1]))
            _limit_open(frames)
    finally:
        for frame in frames:
            _close(frame)


def _listing(fd: int, prefix: str) -> tuple[list[os.DirEntry], list[str]] | str:
    """A folder's sorted entries and its subfolders to walk (last first), or why not."""
    try:
        # scandir, not os.walk + Path: the entries know whether they are links without a
        # stat per file (measured: planning 12 -> 4 us per file).
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        return f"cannot list folder: {exc.strerror or exc}"
    subfolders = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    return entries, subfolders[::-1]


def _reopen(frames: list[_Frame]) -> int:
    """The top frame's descriptor, reopened from the nearest open ancestor if it was closed,
    and checked to be the folder the walk listed."""
    top = frames[-1]
    if top.fd is not None:
        return top.fd
    i = max(i for i, f in enumerate(frames) if f.fd is not None)  # the root's stays open
    fd = os.dup(frames[i].fd)  # type: ignore[arg-type]
    try:
        for frame in frames[i + 1 :]:
            name = frame.prefix.rstrip("/").rpartition("/")[2]
            sub = open_sub(fd, name, frame.prefix.rstrip("/"), kind="input folder")
            os.close(fd)
            fd = sub
        if dir_id(os.fstat(fd)) != top.ident:
            raise ImageError(f"input folder {top.prefix.rstrip('/')} was replaced mid-walk")
    except BaseException:
        os.close(fd)
        raise
    top.fd = fd
    return fd


def _limit_open(frames: list[_Frame]) -> None:
    open_frames = [f for f in frames[1:-1] if f.fd is not None]
    for frame in open_frames[: max(0, len(open_frames) - MAX_OPEN_FOLDERS)]:
        _close(frame)


def _close(frame: _Frame) -> None:
    if frame.fd is not None:
        with contextlib.suppress(OSError):
            os.close(frame.fd)
        frame.fd = None


def _skip(prefix: str, entry: os.DirEntry, reason: str) -> Skip:
    """A skipped entry, named relative to the input root as every event and report names it."""
    return Skip(Path(prefix + entry.name), reason)


def _is_regular(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # follows a symlink (inside the tree) to its target
    except OSError:
        return False


def plan_jobs(
    in_root: Path, out_root: Path, output_format: str = "keep"
) -> Iterator[FileJob | Skip]:
    """A Job per image and a Skip per other file of a local tree (for `score` and counting)."""
    src_dir = os.fspath(in_root.parent if in_root.is_file() else in_root)
    for folder in walk_local(in_root, out_root):
        yield from folder.skips
        names = output_names(folder.images, output_format, folder.subfolders)
        for name in folder.images:
            rel = folder.prefix + name
            yield FileJob(
                os.path.join(src_dir, rel),
                rel,
                os.path.join(os.fspath(out_root), folder.prefix + names[name]),
            )


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
