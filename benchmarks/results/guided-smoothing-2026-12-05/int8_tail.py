import numpy as np, onnx, onnxruntime as ort
from denoise_export import foreign, variants
from denoise_train.mnist import load_split
digits = load_split("test", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
calib = load_split("train", "../shared/data/mnist", download=False)[0][:256].reshape(-1, 1, 28, 28).astype(np.float32)
proto = onnx.load("/tmp/gs/e9/m.onnx")
keep = variants.output_tail
with_tail = variants.to_int8(proto, calib)
variants.output_tail = lambda g: []
without = variants.to_int8(proto, calib)
variants.output_tail = keep
fs = foreign.build_set("display", 40, digits)
def run(p, imgs):
    s = ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
    return [s.run(None, {"noisy": i[None, None]})[0][0, 0] for i in imgs]
clean = [s.clean for s in fs.samples]; noisy = [s.noisy for s in fs.samples]
ps = lambda c, o: 10 * np.log10(1 / np.mean((c - o) ** 2))
for name, p in [("fp32", proto), ("int8 tail float", with_tail), ("int8 tail quantized", without)]:
    outs = run(p, noisy)
    print(name, np.mean([ps(c, o) for c, o in zip(clean, outs)]), sorted({n.op_type for n in p.graph.node} & {"QLinearAveragePool"}))
    print("  ops in tail:", [n.op_type for n in p.graph.node][-30:][:12])
