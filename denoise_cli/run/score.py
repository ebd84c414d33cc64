"""Score a folder of results against clean references: PSNR and SSIM, per folder and overall."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from denoise_cli.core.errors import ImageError, UsageError
from denoise_cli.core.metrics import psnr, ssim
from denoise_cli.files.images import decode_pictures
from denoise_cli.trees.walk import FileJob, plan_jobs

PSNR_CAP = 100.0  # dB; identical images have infinite PSNR, which would swamp any mean


@dataclass
class FolderScore:
    folder: str
    images: int = 0
    psnr: float = 0.0
    ssim: float = 0.0


@dataclass
class ScoreReport:
    results: str
    references: str
    folders: list[FolderScore] = field(default_factory=list)
    overall: FolderScore = field(default_factory=lambda: FolderScore("(all)"))
    missing: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        lines = ["| folder | images | PSNR (dB) | SSIM |", "|---|---:|---:|---:|"]
        for f in [*self.folders, self.overall]:
            lines.append(f"| {f.folder} | {f.images:,} | {f.psnr:.2f} | {f.ssim:.4f} |")
        return "\n".join(lines) + "\n"


def _counterpart(results: Path, job: FileJob) -> Path | None:
    """The result for a reference: same relative path, or the same name written as PNG."""
    direct = results / job.rel
    if direct.is_file():
        return direct
    for candidate in (
        results / (os.path.splitext(job.rel)[0] + ".png"),
        results / (job.rel + ".png"),
    ):
        if candidate.is_file():
            return candidate
    return None


def score_tree(results: Path, references: Path) -> ScoreReport:
    """Compare every reference image with its result (mean per-image PSNR/SSIM)."""
    for root in (results, references):
        if not root.is_dir():
            raise UsageError(f"{root}: not a folder")
    report = ScoreReport(str(results), str(references))
    per_folder: dict[str, list[tuple[float, float]]] = {}
    for job in plan_jobs(references, results):
        if not isinstance(job, FileJob):
            continue
        other = _counterpart(results, job)
        if other is None:
            report.missing.append(job.rel)
            continue
        try:
            # Colour as the files hold it (plain luma), not as the model is given it.
            reference = decode_pictures(job.src, restore_clipped=False)
            scores = _page_scores(reference, decode_pictures(other, restore_clipped=False))
        except ImageError as exc:
            report.failures.append({"file": job.rel, "error": str(exc)})
            continue
        folder = os.path.dirname(job.rel) or "."
        per_folder.setdefault(folder, []).extend(scores)
    everything: list[tuple[float, float]] = []
    for folder in sorted(per_folder):
        values = np.array(per_folder[folder])
        everything.extend(per_folder[folder])
        report.folders.append(_summary(folder, values))
    if everything:
        report.overall = _summary("(all)", np.array(everything))
    return report


def _page_scores(refs: list[np.ndarray], gots: list[np.ndarray]) -> list[tuple[float, float]]:
    """(PSNR, SSIM) of each picture: a multi-page TIFF's pages count as images."""
    if len(refs) != len(gots):
        raise ImageError(f"{len(gots)} pages, the reference {len(refs)}")
    scores = []
    for page, (ref, got) in enumerate(zip(refs, gots, strict=True), 1):
        if ref.shape != got.shape:
            where = f"page {page}: " if len(refs) > 1 else ""
            raise ImageError(
                f"{where}size {got.shape[::-1]} differs from reference {ref.shape[::-1]}"
            )
        p = float(psnr(ref, got)[0])
        s = float(ssim(ref, got)[0]) if min(ref.shape) >= 7 else float("nan")
        scores.append((p, s))
    return scores


def _summary(name: str, values: np.ndarray) -> FolderScore:
    p = float(np.minimum(values[:, 0], PSNR_CAP).mean())
    return FolderScore(name, len(values), p, float(np.nanmean(values[:, 1])))
