import numpy as np, onnx, onnxruntime as ort
from denoise_export import foreign, variants
from denoise_train.mnist import load_split
from denoise_train.world import world_batch
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
train = load_split("train", "../shared/data/mnist", download=False)[0]
calib = train[:256].reshape(-1, 1, 28, 28).astype(np.float32)
wn, _ = world_batch(256, 28, train[1000:3000].reshape(-1, 28, 28), np.random.default_rng(0))
mixed = np.concatenate([calib[:128], wn[:128].astype(np.float32)])
fs = foreign.build_set("display", 40, digits); fp = foreign.build_set("print", 40, digits)
ps = lambda c, o: 10 * np.log10(1 / np.mean((c - o) ** 2))
def score(p, fs):
    s = ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.mean([ps(x.clean, s.run(None, {"noisy": x.noisy[None, None]})[0][0, 0]) for x in fs.samples])
for name in ("/tmp/ev/unet_world33m/m.onnx", "/tmp/gs/e9/m.onnx"):
    m = onnx.load(name)
    print(name, "fp32", score(m, fs), score(m, fp))
    for cname, c in (("mnist", calib), ("world", wn.astype(np.float32)), ("mixed", mixed)):
        q = variants.to_int8(m, c); print("  int8 calib", cname, round(score(q, fs), 2), round(score(q, fp), 2))
