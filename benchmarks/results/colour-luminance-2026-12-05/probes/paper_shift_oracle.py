import numpy as np
from pathlib import Path
from denoise_export.foreign import build_set, luminance
from denoise_export.foreign_eval import through_files, psnr, background_shift
from denoise_cli.model.session import Denoiser
from denoise_train.mnist import load_split
x, _ = load_split("test", "../shared/data/mnist")
fs = build_set("colour", 50, x.reshape(-1, 28, 28))
model = Path("denoise_cli/models/unet_world.onnx")
rgb = through_files(model, [s.noisy for s in fs.samples], 1)
d = Denoiser(model, device="cpu", threads=1)
# grey path on the 8-bit luma, as the runtime feeds it
from denoise_cli.files.chroma import luma
ys = [luma(np.round(s.noisy * 255).astype(np.uint8)).astype(np.float32) / 255 for s in fs.samples]
yo = d.denoise(ys, invert="auto")
rows = []
for s, o, y, yout in zip(fs.samples, rgb, ys, yo):
    C = luminance(s.clean); bg = s.background
    rows.append([np.median(y[bg]) - np.median(C[bg]), np.median(yout[bg]) - np.median(C[bg]), np.median(luminance(o)[bg]) - np.median(C[bg]), psnr(C, luminance(o)), psnr(C, yout), np.median(C[bg]), s.noisy.std() if False else 0])
r = np.array(rows) 
print("bg shift levels: noisy luma %.2f  model luma %.2f  final rgb luma %.2f" % tuple(255 * r[:, :3].mean(0)))
print("psnr final lum %.2f  model luma-only %.2f" % (r[:, 3].mean(), r[:, 4].mean()))
# oracle: remove the per-image background bias
ob = []
for s, o in zip(fs.samples, rgb):
    C = luminance(s.clean); L = luminance(o); bg = s.background
    ob.append(psnr(C, L - (np.median(L[bg]) - np.median(C[bg]))))
print("oracle bias-free psnr %.2f" % np.mean(ob))
print("per image bg level vs shift:", [(round(float(a*255)), round(float(b*255),1)) for a, b in zip(r[:12, 5], r[:12, 1])])
for inv in ["no", "yes"]:
    try:
        yo2 = d.denoise(ys, invert=inv)
    except Exception as e:
        print(inv, e); continue
    sh = [np.median(o[s.background]) - np.median(luminance(s.clean)[s.background]) for s, o in zip(fs.samples, yo2)]
    print(inv, "shift %.2f psnr %.2f" % (255*np.mean(sh), np.mean([psnr(luminance(s.clean), o) for s, o in zip(fs.samples, yo2)])))
