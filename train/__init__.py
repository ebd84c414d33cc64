"""Training side of denoise-batch (PyTorch): MNIST data, model registry, training loop, report."""
