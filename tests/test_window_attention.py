"""Window attention: silent when fresh, attends only within its window and only to pixels that
exist, and exports to ONNX with dynamic sizes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from denoise_train.models import create_model  # noqa: E402
from denoise_train.window_attention import WindowAttention  # noqa: E402
from tests.helpers import assert_exports_with_dynamic_sizes  # noqa: E402


def _woken(block: WindowAttention, seed: int = 0) -> WindowAttention:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        block.out.weight.copy_(torch.randn(block.out.weight.shape, generator=g) * 0.3)
        block.qkv.weight.mul_(3.0)  # sharper attention than the default init gives
    return block.eval()


def _reference(block: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Attention written out window by window over the pixels that exist: no padding, no masks."""
    qkv = block.qkv(x)
    k, s = block.key, block.window
    pooled = torch.zeros(x.shape[0], block.value, *x.shape[-2:], dtype=x.dtype)
    for y0 in range(0, x.shape[-2], s):
        for x0 in range(0, x.shape[-1], s):
            t = qkv[:, :, y0 : y0 + s, x0 : x0 + s]
            h, w = t.shape[-2:]
            t = t.flatten(2).transpose(1, 2)  # (B, tokens, channels)
            q, kk, v = t[..., :k], t[..., k : 2 * k], t[..., 2 * k :]
            a = torch.softmax(q @ kk.transpose(1, 2) * k**-0.5, dim=-1) @ v
            a = a.transpose(1, 2).reshape(-1, block.value, h, w)
            pooled[:, :, y0 : y0 + h, x0 : x0 + w] = a
    return x + block.out(pooled)


def test_fresh_block_leaves_features_unchanged():
    block = WindowAttention(64).eval()
    x = torch.rand(2, 64, 7, 13)
    with torch.no_grad():
        assert torch.equal(block(x), x)


@pytest.mark.parametrize("size", [(7, 7), (8, 16), (13, 21)])
def test_attends_within_windows_to_pixels_that_exist(size):
    block = _woken(WindowAttention(64)).double()
    x = torch.rand(2, 64, *size, dtype=torch.float64)
    with torch.no_grad():
        got, want = block(x), _reference(block, x)
    assert (got - x).abs().max() > 1e-2  # the attention did something
    assert torch.allclose(got, want, atol=1e-10), (got - want).abs().max()


def test_unet_checkpoint_initialises_it_exactly():
    plain = create_model("unet_lite_near").eval()
    nl = create_model("unet_lite_nl").eval()
    missing, unexpected = nl.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("attention.") for k in missing)
    x = torch.rand(2, 1, 36, 44)
    with torch.no_grad():
        assert torch.equal(nl(x), plain(x))


def test_exports_with_dynamic_sizes():
    model = create_model("unet_lite_nl").eval()
    _woken(model.attention)
    assert_exports_with_dynamic_sizes(model)
