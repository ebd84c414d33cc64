"""INT8 calibration on MNIST digits or world canvases, stage 37gs (session 15, as it ran beside
nothing else; run from the repository root). Output:
fp32 display 28.856, print 28.017, world 34.464
mnist 28.762, 27.982, 34.144
world 28.757, 27.980, 34.169
mnist-first-256 28.766, 27.983, 34.160
"""
import numpy as np, onnx, onnxruntime as ort
from denoise_export import foreign, variants
from denoise_train.mnist import load_split
from denoise_train.world import world_batch
from denoise_cli.core.noise import add_noise
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
train = load_split("train", "../shared/data/mnist", download=False)[0]
mn = add_noise(train[::60][:1000].reshape(-1, 1, 28, 28), "gaussian", 0.5, 1).astype(np.float32)
wn, _ = world_batch(256, 64, train[:5000].reshape(-1, 28, 28), np.random.default_rng(3))
wn = wn.astype(np.float32)
proto = onnx.load("denoise_cli/models/unet_world.onnx")
sets = {k: foreign.build_set(k, 50, digits) for k in ("display", "print")}
wt, wc = world_batch(128, 64, digits, np.random.default_rng(20240501))
def sess(p):
    o = ort.SessionOptions(); o.intra_op_num_threads = 1
    return ort.InferenceSession(p.SerializeToString(), o, providers=["CPUExecutionProvider"])
def score(s):
    out = {k: round(float(np.mean([variants.capped_mean_psnr(x.clean[None, None], s.run(None, {"noisy": x.noisy[None, None]})[0]) for x in fs.samples])), 3) for k, fs in sets.items()}
    out["world"] = round(float(np.mean([variants.capped_mean_psnr(wc[i:i+1], s.run(None, {"noisy": wt[i:i+1].astype(np.float32)})[0]) for i in range(128)])), 3)
    return out
print("fp32", score(sess(proto)), flush=True)
for name, c in (("mnist", mn), ("world", wn), ("mnist-first-256", mn[:256])):
    q = variants.to_int8(proto, c, "onnxruntime")
    print(name, score(sess(q)), flush=True)
