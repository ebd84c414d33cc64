import numpy as np, onnx, onnxruntime as ort
from denoise_export import foreign, variants
from denoise_train.mnist import load_split
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
fs = foreign.build_set("display", 40, digits); fc = foreign.build_set("display-clean", 40, digits)
ps = lambda c, o: 10 * np.log10(1 / np.mean((c - o) ** 2))
def score(p, fs):
    s = ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.mean([ps(x.clean, s.run(None, {"noisy": x.noisy[None, None]})[0][0, 0]) for x in fs.samples])
m = onnx.load("/tmp/gs/e9/m.onnx")
print("fp32", score(m, fs), score(m, fc))
print("fp16 tail blocked", score(variants.to_fp16(m), fs), score(variants.to_fp16(m), fc))
variants.output_tail = lambda g: []
print("fp16 tail in fp16", score(variants.to_fp16(m), fs), score(variants.to_fp16(m), fc))
