"""Which files to process, and where each result goes: the input tree mirrored into the output.

Walks lazily, one folder at a time, so memory does not grow with the number of folders.
Names are kept; when a forced output format would make two inputs share one output name
(a.png and a.jpg -> a.png), the file already in that format keeps the name and the others get
their full name plus the new extension (a.jpg.png). Nothing is ever overwritten silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from denoise_cli.errors import UsageError
from denoise_cli.images import is_image_name


@dataclass(frozen=True)
class Job:
    src: Path
    rel: str  # path relative to the input root, '/'-separated, for messages and reports
    dst: Path


@dataclass(frozen=True)
class Skip:
    path: Path
    reason: str


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_roots(in_root: Path, out_root: Path) -> None:
    """Refuse argument combinations that could overwrite inputs or recurse forever."""
    if not in_root.exists():
        raise UsageError(f"{in_root}: input does not exist")
    real_in, real_out = _real(in_root), _real(out_root)
    if in_root.is_file():
        if _inside(real_in, real_out) and real_in.parent == real_out:
            raise UsageError(f"{out_root}: output folder is the input file's own folder")
        return
    if real_in == real_out:
        raise UsageError(f"{out_root}: output folder is the input folder; choose another")
    if _inside(real_in, real_out):
        raise UsageError(
            f"{in_root}: input folder is inside the output folder {out_root}; "
            "outputs could overwrite inputs"
        )
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"{out_root}: output exists and is not a folder")


def output_names(names: list[str], output_format: str) -> dict[str, str]:
    """Output file name for each input image name of one folder."""
    if output_format == "keep":
        return {n: n for n in names}
    ext = "." + output_format
    wanted = {n: os.path.splitext(n)[0] + ext for n in names}
    claims: dict[str, list[str]] = {}
    for name, out in wanted.items():
        claims.setdefault(out, []).append(name)
    result: dict[str, str] = {}
    taken: set[str] = set()
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


def plan_jobs(in_root: Path, out_root: Path, output_format: str = "keep") -> Iterator[Job | Skip]:
    """Yield a Job per image and a Skip per other file, in sorted, reproducible order."""
    if in_root.is_file():
        if not is_image_name(in_root.name):
            yield Skip(in_root, "not an image file")
            return
        name = output_names([in_root.name], output_format)[in_root.name]
        yield Job(in_root, in_root.name, out_root / name)
        return
    real_in, real_out = _real(in_root), _real(out_root)
    for dirpath, dirnames, filenames in os.walk(in_root, followlinks=False):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            sub = here / d
            if sub.is_symlink():
                # Not followed: it could leave the tree or loop.
                yield Skip(sub, "symlinked folder not followed")
            elif _real(sub) != real_out:  # the output folder inside the input is not walked
                kept.append(d)
        dirnames[:] = kept
        images = []
        for f in sorted(filenames):
            path = here / f
            if path.is_symlink() and not _inside(_real(path), real_in):
                yield Skip(path, "symlink pointing outside the input tree")
            elif not is_image_name(f):
                yield Skip(path, "not an image file")
            else:
                images.append(f)
        if not images:
            continue
        rel_dir = here.relative_to(in_root)
        out_dir = out_root / rel_dir
        prefix = "" if rel_dir == Path(".") else rel_dir.as_posix() + "/"
        names = output_names(images, output_format)
        for f in images:
            yield Job(here / f, prefix + f, out_dir / names[f])
