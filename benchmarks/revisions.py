"""End-to-end folder speed of this checkout against another git revision, in the same run.

    python -m benchmarks.revisions REV [--files 10000] [--rounds 5] [--place /dev/shm]
                                       [--model conv_denoiser]

Checks REV out into a temporary worktree and times `python -m denoise_cli.cli IN OUT --quiet`
from each tree on the same 28x28 PNGs, rounds interleaved (the order alternates), so a change
to the runtime can be held to "same speed within noise". Both run with this interpreter and its
packages; only the runtime's own code differs. Prints a table and writes it under
benchmarks/results/ with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.run import ROOT, machine, noisy_digits, table, write_tree


def _timed(tree: Path, src: Path, dst: Path, model: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "denoise_cli.cli", str(src), str(dst), "--quiet", "--model", model],
        check=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="The revision to compare with (e.g. main~5, a commit).")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--place", type=Path, default=Path("/dev/shm"))
    parser.add_argument(
        "--model",
        default="conv_denoiser",
        help="A bundled model both trees have (the default model changes between revisions).",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.rev], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="denoise-rev-", dir=args.place))
    other = work / "tree"
    try:
        subprocess.run(["git", "worktree", "add", "--detach", str(other), rev], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        src = write_tree(work / "in", noisy_digits(args.files))
        trees = {"this checkout": ROOT, f"revision {rev}": other}
        times: dict[str, list[float]] = {name: [] for name in trees}
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for name in order:
                dst = work / f"out-{r}-{name.split()[0]}"
                times[name].append(_timed(trees[name], src, dst, args.model))
                shutil.rmtree(dst)
        ours = times["this checkout"]
        rows = [
            [
                name,
                f"{args.files / statistics.median(t):,.0f}",
                f"{statistics.median(t):.2f}",
                f"{statistics.median(a / b for a, b in zip(t, ours, strict=True)):.3f}x",
            ]
            for name, t in times.items()
        ]
        text = (
            f"{args.files:,} files on {args.place}, --model {args.model}, {args.rounds} "
            "interleaved rounds:\n\n"
            + table(["tree", "images/s (median)", "seconds (median)", "time vs this"], rows)
        )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT,
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
    info = machine()
    date = datetime.now(timezone.utc).isoformat()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"revisions-{date[:10]}-vs-{rev}"
    head = "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items())
    stem.with_suffix(".md").write_text(
        f"# This checkout vs {rev}, {date[:10]}\n\n{head}\n\n{text}\n"
    )
    stem.with_suffix(".json").write_text(
        json.dumps({"machine": info, "date": date, "rev": rev, "seconds": times}, indent=2) + "\n"
    )
    print(f"wrote {stem}.md", file=sys.stderr)


if __name__ == "__main__":
    main()
