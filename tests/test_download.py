"""The MNIST downloader against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from denoise_train import mnist
from denoise_train.idx import encode_idx
from denoise_train.mnist import MnistError, MnistFile, download_file, ensure_files, load_split
from tests.helpers import synthetic_digits


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    short: ClassVar[set[str]] = set()  # paths whose body is cut short (an interrupted transfer)

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if name in self.short else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (_Handler,), {"files": {}, "short": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/mnist/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def synthetic_release(monkeypatch, server):
    """Serve four small IDX archives and point the MNIST file table at their digests."""
    handler, url = server
    table = {}
    for (split, kind), spec in mnist.FILES.items():
        n = 50 if split == "train" else 20
        array = synthetic_digits(n) if kind == "images" else np.zeros(n, np.uint8)
        archive = gzip.compress(encode_idx(array))
        handler.files[spec.name] = archive
        table[(split, kind)] = MnistFile(
            spec.name, hashlib.sha256(archive).hexdigest(), "-", spec.count
        )
    monkeypatch.setattr(mnist, "FILES", table)
    return handler, url


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_downloads_verifies_and_loads(tmp_path, synthetic_release, monkeypatch):
    _, url = synthetic_release
    monkeypatch.setattr(mnist, "MIRRORS", (url,))
    paths = ensure_files(tmp_path / "data", mirrors=(url,))
    assert len(paths) == 4 and all(p.is_file() for p in paths.values())
    images, _ = load_split("test", tmp_path / "data", download=False)
    assert images.shape == (20, 1, 28, 28)
    assert not [n for n in _leftovers(tmp_path / "data") if n.endswith(".part")]


def test_falls_back_to_the_next_mirror(tmp_path, synthetic_release):
    _, url = synthetic_release
    dead = url.replace("/mnist/", "/nothing-here/")
    ensure_files(tmp_path, mirrors=(dead, url))
    assert len(_leftovers(tmp_path)) == 4


def test_bad_digest_leaves_nothing(tmp_path, server):
    handler, url = server
    handler.files["f.gz"] = b"not what upstream published"
    with pytest.raises(MnistError, match="SHA-256 mismatch"):
        download_file(url + "f.gz", tmp_path / "f.gz", "0" * 64)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_leaves_nothing(tmp_path, server):
    handler, url = server
    body = b"x" * 10_000
    handler.files["f.gz"] = body
    handler.short.add("f.gz")
    with pytest.raises((MnistError, OSError)):
        download_file(url + "f.gz", tmp_path / "f.gz", hashlib.sha256(body).hexdigest())
    assert _leftovers(tmp_path) == []


def test_offline_error_is_clear(tmp_path, synthetic_release):
    # A port nothing listens on: connection refused, as when offline.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MnistError) as err:
        ensure_files(tmp_path, mirrors=(f"http://127.0.0.1:{port}/",))
    text = str(err.value)
    assert "could not download" in text and "offline?" in text and "--data-dir" in text
    assert _leftovers(tmp_path) == []
    # A mistyped folder is not left behind (it was created for the download).
    with pytest.raises(MnistError):
        ensure_files(tmp_path / "mnsit" / "raw", mirrors=(f"http://127.0.0.1:{port}/",))
    assert list(tmp_path.iterdir()) == []


def test_download_command_reports_failure(tmp_path, synthetic_release, monkeypatch):
    from typer.testing import CliRunner

    from denoise_cli.core.errors import EXIT_REFUSED
    from denoise_train.cli import app

    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/",))
    result = CliRunner().invoke(app, ["download", "--data-dir", str(tmp_path)])
    assert result.exit_code == EXIT_REFUSED, result.output  # the data set could not be had
    assert "error: could not download" in result.output
