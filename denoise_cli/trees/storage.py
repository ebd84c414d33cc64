"""Folders in stores (s3://, gs://...), through pyarrow's file systems; and which local path
a file: URI names (local folders, however named, are trees.plan's LocalSource and LocalTarget).

Used by the Ray runner, whose workers may not share a disk with the driver. pyarrow is
optional (it comes with Ray Data) and imported only here, only when a URI is used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote_to_bytes, urlsplit
from urllib.request import url2pathname

from denoise_cli.core.errors import ImageError, MissingDependency, UsageError


def is_uri(location: str) -> bool:
    return "://" in location


def file_uri_path(location: str) -> Path | None:
    """The local path a file: URI names ('file:///data/in', 'file://localhost/data'), None
    for anything else ('file:out' is a folder of that name). Refused: another host, a query or
    fragment ('#' and '?' are written %23 and %3F in a URI), no path."""
    if not re.match(r"(?i)file:/", location):
        return None
    parts = urlsplit(location)
    if parts.netloc.lower() not in ("", "localhost"):
        raise UsageError(f"{location}: a file on another host; mount it and give the path")
    if parts.query or parts.fragment or location.endswith(("?", "#")):
        raise UsageError(f"{location}: '?' and '#' start a query in a URI; write %3F and %23")
    if os.name == "nt":
        path = url2pathname(parts.path)  # '/C:/data' -> 'C:\\data'
    else:
        path = os.fsdecode(unquote_to_bytes(parts.path))  # '%FF': that byte, as the OS has it
    if path.strip("/\\") == "":
        raise UsageError(f"{location}: names no folder")
    return Path(path)


class Storage:
    """A folder in some file system: list, read and write files by '/'-separated paths.

    Pickles as its URI, so Ray can ship it to workers, which reconnect on their side.
    """

    def __init__(self, uri: str) -> None:
        try:
            from pyarrow import fs
        except ImportError:
            raise MissingDependency(
                "URIs need pyarrow, which is not installed: pip install 'denoise-batch[ray]'"
            ) from None
        self.uri = uri
        try:
            self.fs, root = fs.FileSystem.from_uri(uri)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... per scheme
            raise UsageError(f"{uri}: not a usable location ({exc})") from None
        if isinstance(self.fs, fs.LocalFileSystem):  # 'local:///x': no local rules, no checks
            raise UsageError(
                f"{uri}: a local folder; give its path (or file:///...) to get the local rules"
            )
        self.root = root.rstrip("/")
        self.in_memory = type(self.fs).__name__ == "_MockFileSystem"  # tests' store
        self._made: set[str] = set()

    def __reduce__(self):
        return (Storage, (self.uri,))

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def list_files(self) -> list[str]:
        """Every file below the root, as sorted paths relative to it."""
        from pyarrow import fs

        selector = fs.FileSelector(self.root, recursive=True, allow_not_found=True)
        rels = []
        for info in self.fs.get_file_info(selector):
            if info.type == fs.FileType.File:
                rels.append(info.path[len(self.root) + 1 :])
        return sorted(rels)

    def list_folder(self, prefix: str) -> set[str]:
        """The names of the files directly in folder `prefix` ('' or 'a/b/'), listed now."""
        from pyarrow import fs

        folder = self.path(prefix.rstrip("/"))
        selector = fs.FileSelector(folder, recursive=False, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return {info.base_name for info in infos if info.type == fs.FileType.File}

    def read(self, rel: str, max_bytes: int | None = None) -> bytes:
        """The whole object; one over `max_bytes` is refused before it is read."""
        if max_bytes is not None:
            size = self.fs.get_file_info(self.path(rel)).size
            if size is not None and size > max_bytes:
                raise ImageError(
                    f"file is {size:,} bytes, more than any image within the pixel limit can "
                    f"take ({max_bytes:,}); not read (raise --max-pixels to allow it)"
                )
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def write(self, rel: str, data: bytes) -> None:
        """Whole or not at all: object stores publish an object only when its upload
        completes (local folders never come here: they are LocalTarget's)."""
        target = self.path(rel)
        parent = str(PurePosixPath(target).parent)
        if parent not in self._made:  # on object stores each call is a request
            self.fs.create_dir(parent, recursive=True)
            self._made.add(parent)
        with self.fs.open_output_stream(target) as f:
            f.write(data)
