"""The numpy-only pieces that the runtime, training and export all use.

Dependencies point one way: denoise_cli.core <- denoise_cli (the runtime) and
denoise_cli.core <- denoise_train <- denoise_export. Nothing here imports onnxruntime, torch or
onnx, or any other part of the project (tests/test_boundary.py holds that).
"""

#: The project's version, which all three commands print with --version (pyproject reads it).
__version__ = "0.1.0"
