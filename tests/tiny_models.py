"""Tiny ONNX models whose outputs the tests can predict, kept as files in tests/models/ so the
runtime-only environment (no `onnx` package) runs the tests that use them.

    python -m tests.tiny_models   # rewrites tests/models/*.onnx (needs onnx)

tests/test_fidelity.py checks that the files are what these builders make.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"


def _model(nodes: list, initializers: list, metadata: dict[str, str]) -> Any:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"value_range": "0..1", **metadata})
    return model


def _mean(size: int, metadata: dict[str, str]) -> Any:
    """The mean of a size x size neighbourhood, zero-padded as any conv layer pads."""
    from onnx import helper, numpy_helper

    weight = np.full((1, 1, size, size), 1.0 / size**2, np.float32)
    pad = size // 2
    node = helper.make_node("Conv", ["noisy", "w"], ["denoised"], pads=[pad] * 4)
    radius = {"receptive_field_radius": str(pad)}
    return _model([node], [numpy_helper.from_array(weight, "w")], {**radius, **metadata})


def builders() -> dict[str, Any]:
    """File name -> a function building the model."""
    from onnx import helper

    def identity(polarity: str) -> Any:
        node = helper.make_node("Identity", ["noisy"], ["denoised"])
        return _model([node], [], {"polarity": polarity})

    def square(polarity: str) -> Any:  # x*x: inverting first and after changes the result
        node = helper.make_node("Mul", ["noisy", "noisy"], ["denoised"])
        return _model([node], [], {"polarity": polarity})

    return {
        "identity_either.onnx": lambda: identity("either"),
        "mean3_either.onnx": lambda: _mean(3, {"polarity": "either"}),
        "mean5_multiple4_either.onnx": lambda: _mean(
            5, {"polarity": "either", "size_multiple": "4"}
        ),
        "square_either.onnx": lambda: square("either"),
        "square_light_on_dark.onnx": lambda: square("light-on-dark"),
    }


def main() -> None:
    MODELS_DIR.mkdir(exist_ok=True)
    for name, build in builders().items():
        (MODELS_DIR / name).write_bytes(build().SerializeToString())
        print(MODELS_DIR / name)


if __name__ == "__main__":
    main()
