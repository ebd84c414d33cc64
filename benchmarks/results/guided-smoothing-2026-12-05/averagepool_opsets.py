import numpy as np, torch, onnx, onnxruntime as ort, time
from onnx import version_converter
F = torch.nn.functional
class P(torch.nn.Module):
    def __init__(s, mode): super().__init__(); s.mode = mode
    def forward(s, x):
        for r in (7, 2, 2):
            k = 2 * r + 1
            if s.mode == "np":
                x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, r), count_include_pad=False)
                x = F.avg_pool2d(x, (k, 1), stride=1, padding=(r, 0), count_include_pad=False)
            elif s.mode == "pad":
                x = F.pad(x, (r, r, r, r), mode="replicate")
                x = F.avg_pool2d(F.avg_pool2d(x, (1, k), stride=1), (k, 1), stride=1)
            elif s.mode == "conv":
                wh = torch.full((1, 1, 1, k), 1.0 / k); wv = torch.full((1, 1, k, 1), 1.0 / k)
                x = F.pad(x, (r, r, r, r), mode="replicate")
                x = F.conv2d(F.conv2d(x, wh), wv)
            elif s.mode == "conv2d":
                x = F.pad(x, (r, r, r, r), mode="replicate")
                x = F.conv2d(x, torch.full((1, 1, k, k), 1.0 / (k * k)))
            elif s.mode == "2d":
                x = F.pad(x, (r, r, r, r), mode="replicate"); x = F.avg_pool2d(x, k, stride=1)
        return x
x = torch.rand(2, 1, 40, 64)
o = ort.SessionOptions(); o.intra_op_num_threads = 1
xs = np.random.rand(256, 1, 28, 28).astype(np.float32)
for mode in ("np", "conv", "conv2d"):
    torch.onnx.export(P(mode), (x,), f"/tmp/gs/p-{mode}.onnx", input_names=["x"], dynamo=False, dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, opset_version=18)
    m = onnx.load(f"/tmp/gs/p-{mode}.onnx"); onnx.save(version_converter.convert_version(m, 19), f"/tmp/gs/p-{mode}-19.onnx")
    for suf in ("", "-19"):
        s = ort.InferenceSession(f"/tmp/gs/p-{mode}{suf}.onnx", o, providers=["CPUExecutionProvider"])
        s.run(None, {"x": xs}); t = time.perf_counter()
        for _ in range(20): s.run(None, {"x": xs})
        print(mode, suf or "-18", f"{(time.perf_counter() - t) / 20 * 1000:.2f} ms")
