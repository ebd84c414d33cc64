"""The progress line: redrawn in place on a terminal, plain lines at intervals off one."""

from __future__ import annotations

import io

from denoise_cli.core.progress import Progress


def test_off_a_terminal_it_prints_plain_lines_only_when_asked():
    quiet, stream = io.StringIO(), io.StringIO()  # StringIO is no terminal
    silent = Progress(4, "epoch 1/1", "step", quiet)
    lines = Progress(4, "epoch 1/1", "step", stream, every=0.0)
    for _ in range(2):
        silent.update(1, loss=0.5)
        lines.update(1, loss=0.5)
    silent.close()
    lines.close()
    assert quiet.getvalue() == ""
    out = stream.getvalue().splitlines()
    assert len(out) == 2 and "\r" not in stream.getvalue()
    assert out[1].startswith("epoch 1/1   50.0% 2/4") and "step/s" in out[1]
    assert out[1].endswith("loss=0.5")


def test_plain_lines_wait_for_their_interval():
    stream = io.StringIO()
    bar = Progress(1000, "", "step", stream, every=3600.0)
    for _ in range(1000):
        bar.update(1)
    assert stream.getvalue() == ""  # an hour has not passed


def test_on_a_terminal_it_redraws_in_place():
    stream = io.StringIO()
    bar = Progress(2, "run", "img", stream, enabled=True, every=0.0)
    bar.update(1)
    bar.close()
    text = stream.getvalue()
    # One redraw for the update, one for close; a single newline at the end.
    assert text.count("\r") == 2 and text.count("\n") == 1 and text.endswith("\n")
    assert "50.0% 1/2" in text
