import numpy as np, torch
import denoise_train.guided_smoothing as G
from denoise_train.checkpoint import load_checkpoint, model_from_checkpoint
from denoise_train.mnist import load_split
from denoise_train.world import world_batch
torch.set_num_threads(1)
train = load_split("train", "../shared/data/mnist", download=False)[0].reshape(-1, 28, 28)
noisy, clean = world_batch(400, 64, train[55000:], np.random.default_rng(0))
m = model_from_checkpoint(load_checkpoint("runs/world/unet_world35gs.pt")).eval()
def ps(out):
    mse = ((out - torch.from_numpy(clean)) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return (10 * torch.log10(1 / mse)).mean().item()
with torch.no_grad():
    x = torch.from_numpy(noisy)
    print("new formula", ps(m(x)))
    old_fwd = G.GuidedSmoothing.forward
    def old(self, x, y):
        sigma = G.box((x - y).abs(), G.NOISE_RADIUS) * self.scale
        eps = sigma * sigma + 1e-6
        mean = G.box(y, 2); var = (G.box(y * y, 2) - mean * mean).clamp(min=0.0)
        a = var / (var + eps); b = mean - a * mean
        return (G.box(a, 2) * y + G.box(b, 2)).clamp(0, 1)
    G.GuidedSmoothing.forward = old
    print("old formula", ps(m(x)))
    m.smoothing = None
    print("no filter", ps(m(x)))
