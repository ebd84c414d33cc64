"""Model-only speed of unet_lite_gs at full-resolution widths 8 (bundled) and 16, onnxruntime,
one thread, interleaved best-of windows."""
import io, time, numpy as np, torch, onnxruntime as ort
from denoise_train.models import UNet, REGISTRY
base = dict(REGISTRY["unet_lite_gs"].args)
def sess(widths):
    m = UNet(**{**base, "widths": widths}).eval()
    f = io.BytesIO()
    torch.onnx.export(m, torch.rand(2, 1, 28, 28), f, input_names=["noisy"], output_names=["denoised"],
        dynamic_axes={"noisy": {0: "n", 2: "h", 3: "w"}}, opset_version=18, dynamo=False)
    o = ort.SessionOptions(); o.intra_op_num_threads = 1
    return sum(p.numel() for p in m.parameters()), ort.InferenceSession(f.getvalue(), o, providers=["CPUExecutionProvider"])
cands = {str(w): sess(w) for w in ([8, 16, 64], [16, 16, 64], [12, 16, 64], [16, 32, 64])}
for shape in ((256, 1, 28, 28), (1, 1, 640, 640)):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    best = {k: 0.0 for k in cands}
    for _ in range(4):
        for k, (_, s) in cands.items():
            s.run(None, {"noisy": x}); t = time.perf_counter(); n = 0
            while time.perf_counter() - t < 0.6: s.run(None, {"noisy": x}); n += 1
            best[k] = max(best[k], n * shape[0] / (time.perf_counter() - t))
    ref = best["[8, 16, 64]"]
    for k, (params, _) in cands.items():
        print(shape, k, params, f"{best[k]:.1f} img/s", f"{best[k] / ref:.2f}x")
