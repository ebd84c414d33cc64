"""scripts/function_lengths.py measures what a reader holds at once: def to last line."""

from __future__ import annotations

import importlib.util
import textwrap

from tests.helpers import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("fl", ROOT / "scripts" / "function_lengths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lengths_count_nested_functions_and_methods_by_qualified_name(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        textwrap.dedent(
            '''
            def outer():
                def inner():
                    return 1
                return inner


            class A:
                async def method(self):
                    """Doc."""
                    return 2
            '''
        )
    )
    found = {name: (line, length) for name, line, length in _script().function_lengths(source)}
    assert found == {"outer": (2, 4), "outer.inner": (3, 2), "A.method": (9, 3)}


def test_an_unknown_folder_is_refused(capsys):
    assert _script().main(["nowhere/"]) == 2
    assert "no limit for nowhere" in capsys.readouterr().out
