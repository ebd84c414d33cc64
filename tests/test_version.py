"""`--version` on each command prints the installed package's version, from one source."""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest
from typer.testing import CliRunner

import denoise_cli

COMMANDS = {
    "denoise-batch": "denoise_cli.cli",
    "denoise-train": "denoise_train.cli",
    "denoise-export": "denoise_export.cli",
}


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_version_prints_the_package_version(prog):
    if prog != "denoise-batch":
        pytest.importorskip("torch")
    app = importlib.import_module(COMMANDS[prog]).app
    result = CliRunner().invoke(app, ["--version"], prog_name=prog, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output == f"{prog} {denoise_cli.__version__}\n"


def test_the_installed_version_is_the_one_printed():
    """pyproject.toml reads the version from denoise_cli.core.__version__: one place."""
    assert importlib.metadata.version("denoise-batch") == denoise_cli.__version__


def test_version_is_not_taken_for_an_input_folder(tmp_path):
    """`denoise-batch IN OUT` prepends `run`; `--version` must not become a folder name."""
    from denoise_cli.cli import app

    result = CliRunner().invoke(app, ["--version"], prog_name="denoise-batch")
    assert "run" not in result.output and result.exit_code == 0
