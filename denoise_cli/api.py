"""The Python API in one place (README, "Python API"): import from here, since the modules
behind these names may move as the package is reorganised.

    from denoise_cli.api import Denoiser, Job, denoise_tree
"""

from __future__ import annotations

from denoise_cli.core.errors import (
    DenoiseError,
    ImageError,
    Interrupted,
    ModelError,
    ProviderError,
    UsageError,
)
from denoise_cli.core.report import RunReport
from denoise_cli.model.bundled import bundled_models
from denoise_cli.model.session import Denoiser
from denoise_cli.run.job import Job
from denoise_cli.run.ray_runner import RayRunner
from denoise_cli.run.runners import denoise_tree, run_job
from denoise_cli.run.transforms import Denoise, Noisify

__all__ = [
    "Denoise",
    "DenoiseError",
    "Denoiser",
    "ImageError",
    "Interrupted",
    "Job",
    "ModelError",
    "Noisify",
    "ProviderError",
    "RayRunner",
    "RunReport",
    "UsageError",
    "bundled_models",
    "denoise_tree",
    "run_job",
]
