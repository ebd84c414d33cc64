"""List the functions longer than their folder's limit (issue 28's target), longest first.

    python scripts/function_lengths.py            # every folder with a limit; exit 1 if any is over
    python scripts/function_lengths.py train/     # one folder

A function's length is its lines from `def` to its last line, docstring and nested functions
included (what a reader has to hold at once). Exit 0 when nothing is over its limit.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Most lines a function may have, per top-level folder (STYLE.md, issue 28).
LIMITS = {"denoise_cli": 60, "train": 80, "export": 80, "benchmarks": 80}


def function_lengths(path: Path) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function in a Python file."""
    tree = ast.parse(path.read_text(), filename=str(path))

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                yield name, child.lineno, (child.end_lineno or child.lineno) - child.lineno + 1
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def over_limit(folder: str, limit: int) -> list[tuple[int, str]]:
    """(length, 'file:line name') of each function under ROOT/folder longer than `limit`."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name, line, length in function_lengths(path):
            if length > limit:
                found.append((length, f"{path.relative_to(ROOT)}:{line} {name}"))
    return sorted(found, reverse=True)


def main(argv: list[str]) -> int:
    folders = [a.strip("/") for a in argv] or list(LIMITS)
    unknown = [f for f in folders if f not in LIMITS]
    if unknown:
        print(f"error: no limit for {', '.join(unknown)}; know {', '.join(LIMITS)}")
        return 2
    total = 0
    for folder in folders:
        found = over_limit(folder, LIMITS[folder])
        total += len(found)
        print(f"{folder}/ (limit {LIMITS[folder]} lines): {len(found)} over")
        for length, where in found:
            print(f"  {length:4d}  {where}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
