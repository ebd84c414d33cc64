"""One-off: a unet_lite_gs checkpoint trained with GuidedSmoothing.log_gain (session 14's first
version) -> the `scale` parameter (= exp(log_gain) * sqrt(pi/2)); the same function. Adam's
moments are carried over by the chain rule (d/d scale = d/d log_gain / scale)."""
import io, math, sys, torch
from denoise_train.checkpoint import load_checkpoint
from denoise_cli.core.atomic import write_atomic  # noqa
src, dst = sys.argv[1:3]
ck = load_checkpoint(src)
state = ck["model_state"]
log_gain = state.pop("smoothing.log_gain")
scale = torch.exp(log_gain) * math.sqrt(math.pi / 2)
state["smoothing.scale"] = scale
opt = ck.get("optimizer_state")
if opt is not None:
    for pid, st in opt["state"].items():
        if st["exp_avg"].dim() == 0 and st["exp_avg"].numel() == 1:
            # the only scalar parameter of the model
            st["exp_avg"] = st["exp_avg"] / scale
            st["exp_avg_sq"] = st["exp_avg_sq"] / scale**2
            print("moved Adam state of param", pid)
print("log_gain", float(log_gain), "-> gain", float(torch.exp(log_gain)), "scale", float(scale))
buf = io.BytesIO(); torch.save(ck, buf); open(dst, "wb").write(buf.getvalue())
