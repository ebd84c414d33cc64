"""The whole export job: checkpoint -> fp32 ONNX (+ variants), each verified and measured.

`run_export` goes in steps: check the request (no two files of one name, a fixed shape the
architecture can take); export the fp32 graph and verify it against PyTorch (`reference`);
then take every file, fp32 included, down one path (`_stage`, with each variant's build and
checks in export/variants.py): build, write into a staging folder beside the output, load that
very file in onnxruntime, verify. Only when every file has passed are they measured and renamed
into place (one file system, so each move is a rename). A failed check, an error or Ctrl-C
leaves the output folder as it was: no new file, no staging folder, existing files untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from denoise_cli.core.atomic import TMP_SUFFIX
from denoise_cli.core.errors import UsageError
from denoise_cli.core.metrics import psnr, ssim
from denoise_cli.core.noise import add_noise
from denoise_cli.core.safety import check_output_file
from denoise_cli.core.timing import best_rate
from denoise_export.metadata import build_metadata, get_metadata, set_metadata
from denoise_export.onnx_export import (
    DEFAULT_OPSET,
    FP32_TOLERANCE,
    ExportError,
    ParityCase,
    check_model,
    check_parity,
    compare_outputs,
    export_model,
    odd_size_digits,
    ort_session,
    receptive_radius,
    run_session,
    save_atomic,
)
from denoise_export.rewrite import METADATA_KEY as REWRITES_KEY
from denoise_export.rewrite import (
    SPLIT_SINGLE_OUTPUT_CONV,
    apply_rewrites,
    split_single_output_convs,
)
from denoise_export.runtimes import RuntimeRow, baseline, check_runtimes
from denoise_export.runtimes import failures as runtime_failures
from denoise_export.variants import (
    DOMAIN_BATCH,
    PROFILES,
    DomainSample,
    Reference,
    Scores,
    Variant,
    check_fixed_shape,
    choose_variants,
)
from denoise_train.checkpoint import (
    deployed,
    file_sha256,
    load_checkpoint,
    model_from_checkpoint,
)
from denoise_train.config import EVAL_NOISE_SEED, eval_noise
from denoise_train.loop import model_input
from denoise_train.models import Arch, count_params, get_arch
from denoise_train.world import world_batch

#: Test digits of the fp32 graph's parity checks against PyTorch (batch 1, 7 and 256).
PARITY_DIGITS = 256
#: A world model's DomainSample: canvases and their side (rounded up to the size multiple).
DOMAIN_CANVASES = 128
DOMAIN_SIZE = 64
#: Metadata key of the capped mean PSNR on the DomainSample (fp32's as `fp32_` + key).
WORLD_PSNR_KEY = "world_psnr_db"


@dataclass(frozen=True, eq=False)
class ExportRequest:
    """One export: which checkpoint, where to, which variants, checked on which digits."""

    checkpoint: Path
    out: Path  # the fp32 file; variants are written beside it, named after its stem
    test_images: np.ndarray  # clean (N, 1, 28, 28): every check and score runs on them
    calibration_images: np.ndarray  # clean (N, 1, 28, 28), for INT8 calibration
    opset: int = DEFAULT_OPSET
    fp16: bool = False
    int8: bool = False
    #: An INT8 file that misses its check is left out (logged) and the rest published, instead
    #: of failing the export: adapt's fine-tunes, where fp32 alone is still the result.
    int8_optional: bool = False
    ort_format: bool = False
    fixed_shape: tuple[int, int, int, int] | None = None
    bench_batch: int = 256  # images/s are measured at this batch (a fixed shape: its own)
    profile: str = "portable"  # variants.PROFILES: where the files will run
    #: export/runtimes.py's runtimes to run every file in (None: all; missing ones are listed).
    runtimes: tuple[str, ...] | None = None
    #: Keys added to (or replacing) the files' metadata: what a fine-tune (train/adapt.py)
    #: knows about its data that the checkpoint's TrainConfig cannot say.
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class VariantRow:
    variant: str
    path: str
    size_bytes: int
    psnr: float
    psnr_vs_fp32: float
    max_abs_vs_fp32: float
    images_per_s: float
    bench_batch: int
    check: str
    test_digits: int  # the test digits psnr is a mean over (all, or a fixed batch's multiple)
    #: dB against fp32 on a world model's canvases (capped PSNR); None where not checked.
    world_vs_fp32: float | None = None


@dataclass
class ExportResult:
    metadata: dict[str, str]
    parity: list[dict[str, Any]]
    rows: list[VariantRow] = field(default_factory=list)
    runtimes: list[RuntimeRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metadata": self.metadata,
            "parity": self.parity,
            "variants": [asdict(r) for r in self.rows],
            "runtimes": [asdict(r) for r in self.runtimes],
        }


def measure_speed(session, shape: tuple[int, ...], seconds: float = 0.5, windows: int = 5) -> float:
    """Model-only images/s for one input shape: warm up, then the best of `windows` timing
    windows sharing about `seconds` (see denoise_cli.core.timing.best_rate)."""
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: x})
    return shape[0] * best_rate(lambda: session.run(None, {name: x}), seconds, windows)


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    test_images: np.ndarray,
    calibration_images: np.ndarray,
    log: Callable[[str], Any] = lambda msg: None,
    **options: Any,
) -> ExportResult:
    """`run_export` of an ExportRequest; `options` are its remaining fields (opset, fp16...)."""
    request = ExportRequest(Path(checkpoint), Path(out), test_images, calibration_images, **options)
    return run_export(request, log)


def run_export(
    request: ExportRequest, log: Callable[[str], Any] = lambda msg: None
) -> ExportResult:
    """Export, verify and measure; write the files only when every one has passed."""
    variants = choose_variants(
        request.out.suffix,
        fp16=request.fp16,
        int8=request.int8,
        ort_format=request.ort_format,
        fixed_shape=request.fixed_shape,
    )
    if request.profile not in PROFILES:
        raise UsageError(f"unknown export profile {request.profile!r}; know {', '.join(PROFILES)}")
    stem = request.out.with_suffix("").name
    names = [f"{stem}{suffix}" for v in variants for suffix in v.suffixes]
    if clashes := sorted({n for n in names if names.count(n) > 1}):
        raise UsageError(
            f"{request.out}: two files of this export would be named {', '.join(clashes)}; "
            "give the output an .onnx name"
        )
    for name in names:  # each file, before the work: a folder in one's place broke the publish
        check_output_file(request.out.with_name(name), [request.checkpoint], "-o")
    ckpt = deployed(load_checkpoint(request.checkpoint))
    arch = get_arch(ckpt["arch"])
    try:
        if request.fixed_shape is not None:  # before the work, not after the other variants
            check_fixed_shape(
                request.fixed_shape,
                arch.name,
                arch.fully_convolutional,
                arch.size_multiple,
                len(request.test_images),
            )
        ref, parity = reference(request, ckpt, arch, log)
        destination = request.out.parent
        with staging_folder(destination, request.out.name) as folder:
            staged = [
                s
                for v in variants
                if (s := _stage_or_skip(v, ref, folder / f"{stem}{v.suffix}", request, log))
            ]
            rows = [row for s in staged if (row := _row(s, destination, request.bench_batch))]
            runtimes = _check_runtimes(staged, ref, request.runtimes, log)
            _publish(staged, destination, log)
    except ExportError as exc:
        raise ExportError(f"{exc}; nothing was written") from exc
    return ExportResult(ref.metadata, [asdict(c) for c in parity], rows, runtimes)


def reference(
    request: ExportRequest, ckpt: dict[str, Any], arch: Arch, log: Callable[[str], Any]
) -> tuple[Reference, list[ParityCase]]:
    """The fp32 graph, verified against PyTorch, with its metadata, and its test outputs."""
    model = model_from_checkpoint(ckpt)
    # Blind models are scored at the reference setting, like every other model.
    config = ckpt["config"]
    kind, level = eval_noise(config)
    clean = request.test_images
    noisy = add_noise(clean, kind, level, EVAL_NOISE_SEED)
    inputs = model_input(arch.task, clean, noisy)
    calibration = request.calibration_images[:0]
    if request.int8:
        calib_clean = request.calibration_images
        calibration = model_input(arch.task, calib_clean, add_noise(calib_clean, kind, level, 1))

    log(f"exporting {arch.name} (opset {request.opset})")
    proto = export_model(
        model, arch.fully_convolutional, request.opset, size_multiple=arch.size_multiple
    )
    rewrites = apply_rewrites(proto, request.profile == "onnxruntime", log)
    check_model(proto)
    parity = check_parity(proto, model, inputs[:PARITY_DIGITS], arch.fully_convolutional)
    for case in parity:
        log(f"  parity {case.name}: max abs {case.max_abs:.2e} (tolerance {FP32_TOLERANCE:g})")

    session = ort_session(proto)
    outputs = run_session(session, inputs)
    domain = domain_sample(config, arch, clean, session)
    metrics = {
        "psnr": float(np.mean(psnr(clean, outputs))),
        "ssim": float(np.mean(ssim(clean, outputs))),
        "noisy_psnr": float(np.mean(psnr(clean, noisy))),
    }
    metadata = build_metadata(
        ckpt,
        count_params(model),
        arch.fully_convolutional,
        file_sha256(request.checkpoint),
        metrics,
        len(clean),
        size_multiple=arch.size_multiple,
        receptive_radius=(
            receptive_radius(model, phases=arch.size_multiple) if arch.fully_convolutional else 0
        ),
        task=arch.task,
    )
    metadata["export_profile"] = request.profile
    if domain is not None:
        metadata[WORLD_PSNR_KEY] = f"{domain.psnr:.4f}"
        log(f"  {domain.name}: {len(domain.clean)} canvases, PSNR {domain.psnr:.2f} dB (capped)")
    metadata.update(request.metadata)
    if rewrites:
        metadata[REWRITES_KEY] = rewrites
    set_metadata(proto, metadata)
    ref = Reference(
        model=model,
        proto=proto,
        metadata=metadata,
        clean=clean,
        inputs=inputs,
        outputs=outputs,
        calibration=calibration,
        opset=request.opset,
        profile=request.profile,
        fully_convolutional=arch.fully_convolutional,
        domain=domain,
    )
    return ref, parity


def domain_sample(
    config: dict[str, Any], arch: Arch, test_images: np.ndarray, session
) -> DomainSample | None:
    """For a model trained on the wide world (and fully convolutional): DOMAIN_CANVASES
    seeded canvases of it, drawn with the test digits and the world's default mix (one
    yardstick for every export on the full test set), noisy and clean, and the fp32 graph's
    outputs. None else."""
    if config.get("data") != "world" or not arch.fully_convolutional:
        return None
    size = -(-DOMAIN_SIZE // arch.size_multiple) * arch.size_multiple
    digits = test_images.reshape(-1, 28, 28)
    rng = np.random.default_rng(EVAL_NOISE_SEED)
    noisy, clean = world_batch(DOMAIN_CANVASES, size, digits, rng)
    noisy, clean = noisy.astype(np.float32), clean.astype(np.float32)
    inputs = model_input(arch.task, clean, noisy)
    return DomainSample("world", clean, inputs, run_session(session, inputs, DOMAIN_BATCH))


@dataclass
class _Staged:
    """A variant's verified file(s) in the staging folder, and a session over the main one."""

    variant: Variant
    files: list[Path]
    session: Any
    scores: Scores | None


def _stage_or_skip(
    variant: Variant,
    ref: Reference,
    path: Path,
    request: ExportRequest,
    log: Callable[[str], Any],
) -> _Staged | None:
    """`_stage`, or None for an INT8 file that missed its check where it is optional."""
    try:
        return _stage(variant, ref, path, log)
    except ExportError as exc:
        if not (request.int8_optional and variant.name == "int8"):
            raise
        log(f"  {variant.name} left out: {exc}")
        path.unlink(missing_ok=True)
        return None


def _stage(variant: Variant, ref: Reference, path: Path, log: Callable[[str], Any]) -> _Staged:
    """Build `variant`, write it to `path` and verify that file; raises ExportError on a miss."""
    model = variant.build(ref)
    del model.graph.value_info[:]  # converters infer shapes again: see export_model
    set_metadata(model, ref.metadata | {"variant": variant.tag})
    check_model(model)
    path.write_bytes(variant.encode(model))
    session = ort_session(path)
    scores = variant.verify(ref, session)
    if scores is not None and variant.tag != ref.metadata.get("variant"):
        # The file carries its own figure (an INT8 file said the fp32 one); only metadata
        # changes, so the verified graph is written again as it was checked.
        set_metadata(model, variant_metadata(ref.metadata, variant.tag, scores))
        path.write_bytes(variant.encode(model))
        session = ort_session(path)
    files = [path]
    stem = path.name.removesuffix(variant.suffix)
    for suffix, make in variant.companions.items():
        files.append(path.with_name(f"{stem}{suffix}"))
        files[-1].write_bytes(make(path))
    quality = f"; test PSNR {scores.psnr:.2f} dB on {scores.digits:,} digits" if scores else ""
    if scores and scores.domain_psnr_vs_fp32 is not None:
        quality += f", {scores.domain_psnr_vs_fp32:+.2f} dB vs fp32 on {ref.domain.name} canvases"
    log(f"  {variant.name} verified ({variant.check}{quality})")
    return _Staged(variant, files, session, scores)


def variant_metadata(metadata: dict[str, str], tag: str, scores: Scores) -> dict[str, str]:
    """The fp32 file's metadata with a variant's own test PSNR (its SSIM is not measured: left
    out rather than the fp32 file's), and the fp32 figure it is compared with; on the
    model's own world too where it was checked there (else no world figure at all)."""
    own = {k: v for k, v in metadata.items() if k not in ("test_ssim", WORLD_PSNR_KEY)}
    figures = {
        "variant": tag,
        "test_psnr_db": f"{scores.psnr:.4f}",
        "fp32_test_psnr_db": metadata.get("test_psnr_db", ""),
    }
    world = metadata.get(WORLD_PSNR_KEY)
    if world and scores.domain_psnr_vs_fp32 is not None:
        figures[WORLD_PSNR_KEY] = f"{float(world) + scores.domain_psnr_vs_fp32:.4f}"
        figures[f"fp32_{WORLD_PSNR_KEY}"] = world
    return own | figures


def _row(staged: _Staged, destination: Path, bench_batch: int) -> VariantRow | None:
    """The results table's row (None for a fixed size the test digits cannot fill)."""
    if staged.scores is None:
        return None
    path = staged.files[0]
    batch = staged.variant.bench_batch or bench_batch
    return VariantRow(
        staged.variant.name,
        str(destination / path.name),
        path.stat().st_size,
        staged.scores.psnr,
        staged.scores.psnr_vs_fp32,
        staged.scores.max_abs_vs_fp32,
        measure_speed(staged.session, (batch, 1, 28, 28)),
        batch,
        staged.variant.check,
        staged.scores.digits,
        staged.scores.domain_psnr_vs_fp32,
    )


def _check_runtimes(
    staged: list[_Staged],
    ref: Reference,
    names: tuple[str, ...] | None,
    log: Callable[[str], Any],
) -> list[RuntimeRow]:
    """Every staged model file in every runtime asked for, against onnxruntime's fp32 file.
    A runtime that runs a file wrongly is reported (and logged), not fatal: the file is right
    in onnxruntime, and the table says where else it runs."""
    if names == ():
        return []
    files = [s.files[0] for s in staged]  # companions are no models
    sample = min(len(ref.inputs), PARITY_DIGITS)
    base = baseline(files[0], ref.clean[:sample], ref.inputs[:sample])
    rows = check_runtimes(files, base, names)
    for row in runtime_failures(rows):
        log(f"  warning: {row.runtime} runs {row.file} {row.verdict}: {row.reason}")
    return rows


def _publish(staged: list[_Staged], destination: Path, log: Callable[[str], Any]) -> None:
    """Move every verified file into place, fp32 first. Each move is a rename within one
    file system: only a kill in the microseconds between two of them mixes old and new."""
    for entry in staged:
        for path in entry.files:
            os.replace(path, destination / path.name)
            log(f"  wrote {destination / path.name}")


@contextlib.contextmanager
def staging_folder(destination: Path, name: str) -> Iterator[Path]:
    """A new hidden folder inside `destination` (made if missing), for files not yet verified.

    It is removed on the way out, whatever happens; so are the folders made for it, when the
    job failed and they are empty. Its name ends like denoise_cli.core.atomic's temporary
    files, so a leftover after kill -9 is recognisable, never taken for an output.
    """
    made = []
    folder = destination
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=TMP_SUFFIX, dir=destination))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)


@dataclass
class RewriteResult:
    rewrites: int
    cases: list[ParityCase]


def rewrite_file(source: Path, out: Path, digits: np.ndarray) -> RewriteResult:
    """Apply the CPU-speed rewrites to an existing ONNX file (one exported before them, say).

    The result is checked against the source file in onnxruntime on `digits` (N, 1, 28, 28)
    at batch 1, 7 and 256 and, when the model takes any size, on a 64x48 image; only then is
    `out` written. Nothing is written when no rewrite applies.
    """
    original = onnx.load(str(source))
    proto = onnx.ModelProto()
    proto.CopyFrom(original)
    done = [r for r in get_metadata(original).get(REWRITES_KEY, "").split(",") if r]
    count = split_single_output_convs(proto)
    if not count:
        return RewriteResult(0, [])
    check_model(proto)
    before, after = ort_session(original), ort_session(proto)
    cases = [(f"batch {b}", digits[:b]) for b in (1, 7, 256) if b <= len(digits)]
    dims = before.get_inputs()[0].shape
    if not all(isinstance(d, int) for d in dims[2:]):
        cases.append(("64x48 image", odd_size_digits(digits)))
    results = []
    for name, x in cases:
        expected = run_session(before, x, batch_size=len(x))
        got = run_session(after, x, batch_size=len(x))
        results.append(
            compare_outputs(f"rewritten vs {source.name}, {name}", expected, got, FP32_TOLERANCE)
        )
    metadata = get_metadata(original)
    metadata[REWRITES_KEY] = ",".join([*done, SPLIT_SINGLE_OUTPUT_CONV])
    metadata["export_profile"] = "onnxruntime"
    set_metadata(proto, metadata)
    save_atomic(proto, out)
    return RewriteResult(count, results)


def _signed(db: float) -> str:
    """+0.000 for a change that rounds to nothing (not -0.000)."""
    return f"{db:+.3f}" if round(db, 3) else "+0.000"


def markdown_table(rows: list[VariantRow]) -> str:
    """The export's table; a world column where a variant was checked on world canvases."""
    base = next((r.images_per_s for r in rows if r.variant == "fp32"), None)
    world = any(r.world_vs_fp32 is not None for r in rows)
    lines = [
        "| variant | file | size (KB) | test PSNR (dB) | test digits | vs fp32 (dB) "
        + ("| world vs fp32 (dB) " if world else "")
        + "| max abs vs fp32 | CPU images/s (batch) | speed vs fp32 | check |",
        "|---|---|---:|---:|---:|---:|" + ("---:|" if world else "") + "---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r.images_per_s / base:.2f}x" if base else "-"
        world_cell = "-" if r.world_vs_fp32 is None else _signed(r.world_vs_fp32)
        lines.append(
            f"| {r.variant} | {Path(r.path).name} | {r.size_bytes / 1024:.1f} | {r.psnr:.2f} "
            f"| {r.test_digits:,} | {_signed(r.psnr_vs_fp32)} "
            + (f"| {world_cell} " if world else "")
            + f"| {r.max_abs_vs_fp32:.1e} | {r.images_per_s:,.0f} "
            f"({r.bench_batch}) | {ratio} | {r.check} |"
        )
    return "\n".join(lines) + "\n"
