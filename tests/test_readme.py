"""The README's promises that can be run: its Python API block, its links, its test command."""

from __future__ import annotations

import re
import shutil

from tests.helpers import ROOT, SAMPLES

README = (ROOT / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_python_api_block_runs_as_written(tmp_path, monkeypatch, capsys):
    """Exec'd as it stands, in a folder holding `scans/` (the bundled noisy samples)."""
    (block,) = _python_blocks()
    shutil.copytree(SAMPLES / "noisy", tmp_path / "scans")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    count = len(list((tmp_path / "scans").rglob("*.png")))
    assert capsys.readouterr().out == f"{count} 0 []\n"
    assert len(list((tmp_path / "clean").rglob("*.png"))) == count == 24


def test_the_readme_names_the_test_command_that_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == ".venv/bin/python -m pytest -q"
    assert f"`{ci[-1]}`" in README and "bash .ci/run" in README


def test_every_local_link_leads_to_a_file():
    links = [t for t in re.findall(r"\]\(([^)#]+)\)", README) if "://" not in t]
    assert links, "the README links its docs"
    missing = [t for t in links if not (ROOT / t).exists()]
    assert not missing, missing
