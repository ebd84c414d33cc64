import numpy as np, onnx, onnxruntime as ort
from denoise_export import foreign, variants
from denoise_train.mnist import load_split
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
calib = load_split("train", "../shared/data/mnist", download=False)[0][:256].reshape(-1, 1, 28, 28).astype(np.float32)
def from_sigmoid(g):
    last = max(i for i, n in enumerate(g.node) if n.op_type == "Sigmoid")
    return [n.name for n in g.node[last:]]
fs = foreign.build_set("display", 40, digits)
clean = [s.clean for s in fs.samples]; noisy = [s.noisy for s in fs.samples]
ps = lambda c, o: 10 * np.log10(1 / np.mean((c - o) ** 2))
def score(p):
    s = ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.mean([ps(c, s.run(None, {"noisy": i[None, None]})[0][0, 0]) for c, i in zip(clean, noisy)])
plain = onnx.load("/tmp/ev/unet_world33m/m.onnx")
print("plain fp32", score(plain), "int8", score(variants.to_int8(plain, calib)))
gs = onnx.load("/tmp/gs/e9/m.onnx")
variants.output_tail = from_sigmoid
print("gs int8, sigmoid on float", score(variants.to_int8(gs, calib)))
print("plain int8, sigmoid float", score(variants.to_int8(plain, calib)))
