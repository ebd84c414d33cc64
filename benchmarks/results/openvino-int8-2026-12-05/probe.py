import sys, time, numpy as np, onnxruntime as ort
opts = {"device_type": "CPU", "precision": "FP32", "load_config": '{"CPU": {"ENABLE_CPU_PINNING": "NO"}}', "num_of_threads": "1"}
files = sys.argv[1:]
x28 = np.load("/tmp/diag/digits_noisy.npy")[:256]
c28 = np.load("/tmp/diag/digits_clean.npy")[:256]
res = {}
for prov in ["OpenVINOExecutionProvider", "CPUExecutionProvider"]:
    sess = []
    for f in files:
        so = ort.SessionOptions(); so.intra_op_num_threads = 1
        po = [(prov, opts)] if prov.startswith("OpenVINO") else [prov]
        sess.append(ort.InferenceSession(f, so, providers=po))
    best = [1e9] * len(sess)
    for shape_name, x in [("28x28 x256", x28)]:
        for r in range(5):
            for i, s in enumerate(sess):
                t = time.perf_counter(); y = s.run(None, {s.get_inputs()[0].name: x})[0]; best[i] = min(best[i], time.perf_counter() - t)
        for f, s, b in zip(files, sess, best):
            y = s.run(None, {s.get_inputs()[0].name: x})[0]
            p = np.mean(10 * np.log10(1 / ((y - c28) ** 2).reshape(len(y), -1).mean(1)))
            print(f"{prov[:8]} {f.split('/')[-1]:24s} {len(x)/b:8,.0f} img/s  psnr {p:.3f}", flush=True)
