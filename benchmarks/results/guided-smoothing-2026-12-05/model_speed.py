import sys, time, numpy as np, onnxruntime as ort
def sess(p):
    o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(p, o, providers=["CPUExecutionProvider"])
shapes = [tuple(map(int, s.split("x"))) for s in __import__("os").environ.get("SHAPES", "256x28x28,16x40x160,1x512x512").split(",")]
ss = {p: sess(p) for p in sys.argv[1:]}
for n, h, w in shapes:
    x = np.random.default_rng(0).random((n, 1, h, w), dtype=np.float32)
    best = {}
    for r in range(5):
        for p, s in ss.items():
            name = s.get_inputs()[0].name
            s.run(None, {name: x})
            t = time.perf_counter(); k = 0
            while time.perf_counter() - t < 0.6:
                s.run(None, {name: x}); k += 1
            best[p] = max(best.get(p, 0), k * n * h * w / (time.perf_counter() - t) / 1e6)
    base = best[sys.argv[1]]
    print(f"{n}x{h}x{w}: " + "  ".join(f"{p.split('/')[-2]} {v:.2f} MPx/s ({v/base:.2f}x)" for p, v in best.items()), flush=True)
