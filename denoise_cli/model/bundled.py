"""The models shipped in the package: their folder, the default, and names that resolve to them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _models_dir() -> Path:
    return Path(str(resources.files("denoise_cli") / "models"))


#: The bundled model that no --model (or --model default) means; README, "The bundled models".
DEFAULT_MODEL = "unet_world"


def default_model_path() -> Path:
    """The bundled model used when --model is not given."""
    return _models_dir() / f"{DEFAULT_MODEL}.onnx"


def bundled_models() -> dict[str, Path]:
    """Models shipped in the package, by name (the file name without .onnx). Variant files
    beside a model (`NAME.int8.onnx`) are not models of their own: see `precision_file`."""
    return {p.stem: p for p in sorted(_models_dir().glob("*.onnx")) if "." not in p.stem}


def resolve_model(model: str | Path | None) -> Path:
    """A path as given, or a bundled model's name (e.g. 'conv_denoiser'); None or 'default': the
    default model."""
    if model is None:
        return default_model_path()
    path = Path(model)
    if not path.is_file() and path.suffix == "":  # a folder named like one does not hide it
        if str(model) == "default":
            return default_model_path()
        if str(model) in bundled_models():
            return bundled_models()[str(model)]
    return path


def model_file_problem(path: Path, given: str | Path | None) -> str | None:
    """Why `path` (resolved from `given`) cannot be a model file, said for a user, or None.
    A bare word that is no file is most likely a misspelled bundled name: they are listed."""
    if given is not None and not str(given).strip():
        return "an empty model name: give a model file or a bundled name"
    if path.is_dir():
        return f"{path}: a folder, not a model file"
    if not path.exists():
        if path.suffix == "" and given is not None and len(Path(str(given)).parts) == 1:
            names = ", ".join(bundled_models())
            return f"{given}: no such model file or bundled model (bundled: {names})"
        return f"{given if given is not None else path}: model file not found"
    if not path.is_file():  # a FIFO would block the open below; a device is no model
        return f"{path}: not a regular file"
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"{path}: cannot read the model file ({exc.strerror or exc})"
    return None
