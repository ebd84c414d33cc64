"""denoise-batch: denoise folders of digit images with an ONNX model and onnxruntime.

This package is the torch-free runtime. It must never import torch, the ONNX exporter or the
`denoise_train`/`denoise_export` packages; tests/test_boundary.py enforces that in a subprocess.
"""

from denoise_cli.core import __version__ as __version__
