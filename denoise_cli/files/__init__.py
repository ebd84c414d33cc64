"""Image files: decoding and encoding them (Pillow, with a fast path for small PNGs) and
streaming large PNGs band by band. Knows nothing of models, trees or runs."""
