"""Colour restoration's MAX_SHARE guard on white paper (a red-team finding: noisy 255 paper
came back darker and mottled in colour, where the same scan in grey came back white).

For each MAX_SHARE: (a) white paper with black rules, per-channel Gaussian sigma 8/15/25,
the paper's mean and spread out; (b) the foreign colour set, first 50: luminance PSNR and the
paper shift; (c) its clean copies. Through the runtime's files path, one thread."""

import sys
from pathlib import Path

import numpy as np

import denoise_cli.files.luminance as L
from denoise_export.foreign import build_set, luminance
from denoise_export.foreign_eval import through_files
from denoise_train.mnist import load_split

MODEL = Path(sys.argv[1] if len(sys.argv) > 1 else "denoise_cli/models/unet_world.onnx")
x, _ = load_split("test", "../shared/data/mnist")
rng = np.random.default_rng(5)
papers = []
for s in (8, 15, 25):
    clean = np.full((128, 128, 3), 255.0)
    clean[20:100:20, 10:118] = 0
    clean[21:100:20, 10:118] = 0
    noisy = np.clip(np.round(clean + rng.normal(0, s, clean.shape)), 0, 255) / 255
    papers.append((s, noisy.astype(np.float32)))
colour = build_set("colour", 50, x.reshape(-1, 28, 28))
clean_set = build_set("colour-clean", 50, x.reshape(-1, 28, 28))


def scores(fs, outs):
    psnr, shift = [], []
    for sample, out in zip(fs.samples, outs, strict=True):
        y, c = luminance(np.asarray(out)), luminance(sample.clean)
        psnr.append(-10 * np.log10(np.mean((y - c) ** 2) + 1e-10))
        shift.append(255 * (y[sample.background].mean() - c[sample.background].mean()))
    return np.mean(psnr), np.mean(shift)


for share in [float(v) for v in (sys.argv[2:] or ["0.5", "0.6", "0.7", "0.8"])]:
    L.MAX_SHARE = share
    L._excess_table.cache_clear()
    outs = through_files(MODEL, [p for _, p in papers], 1)
    paper = " ".join(
        f"s{s} {255 * o[104:128].mean():.1f}±{255 * o[104:128].std():.1f}"
        for (s, _), o in zip(papers, outs, strict=True)
    )
    c = scores(colour, through_files(MODEL, [s.noisy for s in colour.samples], 1))
    k = scores(clean_set, through_files(MODEL, [s.noisy for s in clean_set.samples], 1))
    print(f"MAX_SHARE {share}: white paper {paper} | colour {c[0]:.2f} dB ({c[1]:+.2f}) | clean {k[0]:.2f} dB ({k[1]:+.2f})", flush=True)
