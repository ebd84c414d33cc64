import sys, numpy as np, torch
from denoise_export.foreign import build_set, luminance
from denoise_export.foreign_eval import psnr
from denoise_export.suite import checkpoint_runner
from denoise_cli.files.chroma import luma
from denoise_train.checkpoint import load_checkpoint, model_from_checkpoint
from denoise_train.mnist import load_split
torch.set_num_threads(1)
x, _ = load_split("test", "../shared/data/mnist")
digits = x.reshape(-1, 28, 28)
N = int(sys.argv[1])
sets = {}
for name in ["colour", "display", "print", "colour-clean"]:
    fs = build_set(name, N, digits)
    if fs.colour:
        ins = [luma(np.round(s.noisy * 255).astype(np.uint8)).astype(np.float32) / 255 for s in fs.samples]
        cl = [luminance(s.clean) for s in fs.samples]
    else:
        ins = [s.noisy for s in fs.samples]; cl = [s.clean for s in fs.samples]
    sets[name] = (ins, cl, [s.background for s in fs.samples])
for path in sys.argv[2:]:
    m = model_from_checkpoint(load_checkpoint(path)).eval()
    def predict(b):
        with torch.no_grad():
            return m(torch.from_numpy(np.ascontiguousarray(b))).numpy()
    def run(ims):
        out = []
        for i in range(0, len(ims), 50):
            b = np.stack(ims[i:i+50])[:, None]
            assert b.shape[2] % 4 == 0 and b.shape[3] % 4 == 0
            out.extend(predict(b)[:, 0])
        return out
    row = []
    for name, (ins, cl, bgs) in sets.items():
        out = run(ins)
        p = np.mean([psnr(c, o) for c, o in zip(cl, out)])
        sh = np.mean([np.median(o[b]) - np.median(c[b]) for c, o, b in zip(cl, out, bgs)]) * 255
        row.append(f"{name} {p:.3f} ({sh:+.2f})")
    print(path.split('/')[-1], " | ".join(row), flush=True)
