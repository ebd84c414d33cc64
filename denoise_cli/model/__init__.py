"""The model: bundled lookup, its metadata contract, providers and precision, polarity, tile
geometry and scale, the onnxruntime session, and streaming a large image through it."""
