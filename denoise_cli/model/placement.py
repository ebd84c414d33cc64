"""Where and how the model runs, decided once per run (`place`) into a plain `Placement`:
the providers asked of onnxruntime, their options, the model file (fp32 or its INT8 beside it),
whether helper processes may fork before the session exists, and the pixel budget per call.
Helpers and actors receive the Placement with the Job and load exactly what it says."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from denoise_cli.core.errors import MissingDependency, ModelError, ProviderError, UsageError
from denoise_cli.model.bundled import model_file_problem, resolve_model

#: Short names accepted by --device, mapped to onnxruntime's provider names. Any full provider
#: name that the installed onnxruntime lists is accepted too.
DEVICE_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


#: What --device auto tries, best first. TensorRT is left out: it builds an engine per input
#: shape, which costs more than it saves on tiny models and mixed image sizes.
AUTO_ORDER = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    # Only onnxruntime-openvino offers it (installed by choice, instead of onnxruntime): with
    # the INT8 file it ran unet_scenes 1.58x faster than the CPU provider's fp32 model-only
    # and 1.19x end to end on 28x28 digits (2 AVX2 cores, benchmarks/results/speed-2026-12-02b).
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)


#: Which file of a model runs: fp32, its INT8 export beside it, or auto (`precision_file`).
PRECISIONS = ("auto", "fp32", "int8")


#: Providers on which --precision auto takes the INT8 file: where it measured faster than
#: fp32 after passing the export's accuracy check. OpenVINO: 1.38x fp32 for the default's
#: INT8 file (unet_scenes' 1.79x), 0.02 dB below fp32 on test digits
#: (benchmarks/results/openvino-int8-2026-12-05). Elsewhere fp32: the CPU provider runs
#: today's INT8 files 1.29-1.36x faster on AVX-512 (0.78x of fp32 under the old rule on
#: AVX2), but the default's costs 0.07-0.18 dB on the foreign sets; --precision int8 asks.
INT8_FASTER_ON = frozenset({"OpenVINOExecutionProvider"})


def int8_file(path: Path) -> Path:
    """Where a model's INT8 export lies: NAME.int8.onnx beside NAME.onnx."""
    return path.with_name(f"{path.name.removesuffix('.onnx')}.int8.onnx")


def check_device_name(device: str) -> None:
    """Refuses a --device that no onnxruntime build could offer (a typo), without asking this
    machine's onnxruntime: for a driver whose actors run elsewhere."""
    known = device == "auto" or device.lower() in DEVICE_ALIASES
    if not (known or device.endswith("ExecutionProvider")):
        raise ProviderError(
            f"device {device}: not a device name (auto, {', '.join(DEVICE_ALIASES)}, or an "
            "onnxruntime provider name)"
        )


def precision_file(path: Path, precision: str, provider: str) -> Path:
    """The file to load for `precision` on `provider`: `path` itself, or the verified INT8
    export beside it (`denoise-export --int8` writes NAME.int8.onnx next to NAME.onnx)."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    int8 = int8_file(path)
    if precision == "int8" and not int8.is_file():
        raise ModelError(f"{path}: no INT8 file beside it ({int8.name}; denoise-export --int8)")
    if precision == "int8" or (
        precision == "auto" and provider in INT8_FASTER_ON and int8.is_file()
    ):
        return int8
    return path


def import_onnxruntime() -> Any:
    """onnxruntime, with its telemetry off unless the user set ORT_DISABLE_TELEMETRY: its
    POSIX builds (1.32 here) write a device id and an event queue under ~/.cache/Microsoft
    on every import, and warn in colour where HOME is read-only; a batch tool writes only OUT.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency(
            "onnxruntime is not installed: pip install 'denoise-batch[cpu]' "
            "(or 'denoise-batch[gpu]' for CUDA)"
        ) from None
    return onnxruntime


def conflicting_runtimes() -> list[str]:
    """Installed onnxruntime distributions; more than one means they overwrite each other."""
    import importlib.metadata  # here, not at start-up: 15 ms of every run

    names = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name == "onnxruntime" or (name.startswith("onnxruntime-") and "extensions" not in name):
            names.add(name)
    return sorted(names) if len(names) > 1 else []


#: Options per provider. OpenVINO's CPU plugin defaults to bf16 on CPUs that have it, which
#: moved outputs by up to 0.14 in a test here: it computes in FP32, as the export verified.
#: It also pins its threads to cores, the same cores in every worker process: two workers of
#: one thread each shared one core of two (measured: 2,250 images/s each, 4,500 alone; with
#: pinning off, 4,400 each).
PROVIDER_OPTIONS: dict[str, dict[str, str]] = {
    "OpenVINOExecutionProvider": {
        "device_type": "CPU",
        "precision": "FP32",
        "load_config": '{"CPU": {"ENABLE_CPU_PINNING": "NO"}}',
    },
}


def provider_options(provider: str, threads: int | None) -> dict[str, str]:
    """PROVIDER_OPTIONS for `provider`, with the thread count where the provider keeps its own
    pool: OpenVINO ignores onnxruntime's intra_op_num_threads and took every core in each
    worker process (measured: two workers on 2 cores ran 3.20 s against 3.11 s for one)."""
    options = dict(PROVIDER_OPTIONS.get(provider, {}))
    if threads and provider == "OpenVINOExecutionProvider":
        options["num_of_threads"] = str(threads)
    return options


def resolve_providers(device: str, available: Sequence[str]) -> list[str]:
    """The provider list to ask onnxruntime for; raises ProviderError for an unusable device."""
    if device == "auto":
        return [p for p in AUTO_ORDER if p in available] or list(available)
    wanted = DEVICE_ALIASES.get(device.lower(), device)
    if wanted not in available:
        hint = ""
        if wanted == "OpenVINOExecutionProvider":
            hint = (
                " Install onnxruntime's OpenVINO build instead of the CPU one: "
                "pip uninstall -y onnxruntime && pip install 'denoise-batch[openvino]'."
            )
        if wanted == "CUDAExecutionProvider":
            hint = (
                " Install the GPU runtime instead of the CPU one: "
                "pip uninstall -y onnxruntime && pip install 'denoise-batch[gpu]'."
            )
            clash = conflicting_runtimes()
            if clash:
                hint = f" Both {' and '.join(clash)} are installed and overwrite each other:"
                hint += " uninstall both, then install only onnxruntime-gpu."
        raise ProviderError(
            f"device {device}: {wanted} is not available in this onnxruntime "
            f"(available: {', '.join(available)}).{hint}"
        )
    return [wanted] if wanted == "CPUExecutionProvider" else [wanted, "CPUExecutionProvider"]


#: Pixels per model call. On CPU, batches of ~80 digits keep activations in cache and measured
#: fastest (15k vs 13.6k images/s per thread at 256); GPUs want big batches.
CPU_BATCH_PIXELS = 1 << 16
GPU_BATCH_PIXELS = 1 << 22

#: Providers whose helper processes fork before the parent's session exists: each process
#: builds its own CPU (or OpenVINO) session, so nothing is copied across the fork. A CUDA
#: context cannot cross a fork: GPU helpers are spawned.
EARLY_FORK_PROVIDERS = frozenset({"CPUExecutionProvider", "OpenVINOExecutionProvider"})


@dataclass(frozen=True)
class Placement:
    """One run's decision of where the model runs (see the module's docstring). Plain and
    picklable: a helper process or a Ray actor loads what it says and decides nothing."""

    model_file: str  # the file that loads: the model, or its INT8 file beside it
    device: str  # as asked (auto, cpu, cuda...), for messages
    providers: tuple[str, ...]  # asked of onnxruntime, best first
    precision: str  # as asked: auto, fp32 or int8

    def agrees(self, model: str | Path | None, device: str, precision: str) -> bool:
        """Whether settings given beside this Placement say the same (None or auto: as
        placed), so a Placement can never silently stand for another model or device."""
        if device not in ("auto", self.device) or precision not in ("auto", self.precision):
            return False
        if model is None:
            return True
        path = resolve_model(model)
        return self.model_file in (str(path), str(int8_file(path)))

    @property
    def provider(self) -> str:
        return self.providers[0]

    @property
    def forks_early(self) -> bool:
        """Whether helper processes may fork before this process builds its session."""
        return self.provider in EARLY_FORK_PROVIDERS

    @property
    def forks_after_load(self) -> bool:
        """Whether a helper may still be forked once this process's session has loaded: a CPU
        session is rebuilt by each helper and never touched; a CUDA context cannot cross a
        fork, and OpenVINO's threads are not known to."""
        return self.provider == "CPUExecutionProvider"

    @property
    def batch_pixels(self) -> int:
        """Pixels per model call (images, or tiles, as many as fit)."""
        return CPU_BATCH_PIXELS if self.provider == "CPUExecutionProvider" else GPU_BATCH_PIXELS


def place(
    model: str | Path | None = None, device: str = "auto", precision: str = "auto"
) -> Placement:
    """The Placement for a model (a path, a bundled name, None for the default) on `device`,
    checked against what the installed onnxruntime offers: a device it lacks is refused here
    (ProviderError), before any file is read or any helper starts."""
    path = resolve_model(model)
    if problem := model_file_problem(path, model):
        raise ModelError(problem)
    providers = resolve_providers(device, import_onnxruntime().get_available_providers())
    chosen = precision_file(path, precision, providers[0])
    return Placement(str(chosen), device, tuple(providers), precision)


def session_options(ort: Any, threads: int | None) -> Any:
    """onnxruntime's SessionOptions as every session of a run gets them."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # we report provider fallbacks ourselves, as errors
    opts.inter_op_num_threads = 1
    # Idle onnxruntime threads spin by default, burning the cores that decoding and encoding
    # need; measured here: no model-only throughput lost without spinning.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    return opts
