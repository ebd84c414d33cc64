"""Export side of denoise-batch: checkpoint -> verified, self-contained ONNX files and variants."""
