"""Re-parameterised training: branches that start silent, fold away exactly, and export as the
plain architecture (the same graph, the same cost)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from denoise_export.cli import app  # noqa: E402
from denoise_train.checkpoint import (  # noqa: E402
    deployed,
    load_checkpoint,
    model_from_checkpoint,
)
from denoise_train.config import TrainConfig  # noqa: E402
from denoise_train.loop import fit  # noqa: E402
from denoise_train.mnist import load_split  # noqa: E402
from denoise_train.models import count_params, create_model  # noqa: E402
from denoise_train.reparam import RepConvBlock, fuse  # noqa: E402


def _trained_branches(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and batch-norm statistics everywhere, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            elif isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) / fan_in**0.5)
    return model.eval()


def test_fused_network_computes_what_the_branched_one_does():
    rep = _trained_branches(create_model("unet_lite_rep")).double()  # exact math: float64
    plain = fuse(rep)
    assert not any(isinstance(m, RepConvBlock) for m in plain.modules())
    assert count_params(plain) == count_params(create_model("unet_lite_near"))
    x = torch.rand(3, 1, 36, 52, dtype=torch.float64)
    with torch.no_grad():
        want, got = rep(x), plain(x)
    assert want.std() > 0.05 and torch.allclose(want, got, atol=1e-10), (want - got).abs().max()
    with torch.no_grad():  # the same network with silent branches: they did count
        for block in rep.modules():
            if isinstance(block, RepConvBlock):
                for bn in block.branches.modules():
                    if isinstance(bn, torch.nn.BatchNorm2d):
                        bn.weight.zero_(), bn.bias.zero_()
        assert (rep(x) - want).abs().max() > 1e-2


def test_a_plain_checkpoint_loads_into_fresh_branches_unchanged():
    plain = _trained_branches(create_model("unet_lite_near"), seed=3)
    rep = create_model("unet_lite_rep")
    missing, unexpected = rep.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".branches." in k for k in missing)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(rep.eval()(x), plain(x), atol=1e-6)


def test_trained_rep_checkpoint_exports_as_the_plain_architecture(tmp_path, tiny_mnist):
    images = load_split("train", tiny_mnist, download=False)[0]
    ckpt_path = tmp_path / "rep.pt"
    config = TrainConfig(arch="unet_lite_rep", epochs=1, batch_size=16, lr=5e-3, val_size=32)
    fit(config, images[:128], ckpt_path, log=lambda m: None, progress=False)
    ckpt = load_checkpoint(ckpt_path)
    plain = deployed(ckpt)
    assert (plain["arch"], plain["config"]["trained_as"]) == ("unet_lite_near", "unet_lite_rep")
    assert "rep" not in plain["arch_args"] and deployed(plain) is plain

    out = tmp_path / "rep.onnx"
    args = [str(ckpt_path), "-o", str(out), "--data-dir", str(tiny_mnist), "--runtimes", "none"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["architecture"] == "unet_lite_near" and meta["trained_as"] == "unet_lite_rep"
    assert json.loads(meta["architecture_args"]).get("rep") is None
    x = np.random.default_rng(0).random((2, 1, 32, 40), dtype=np.float32)
    with torch.no_grad():
        want = model_from_checkpoint(ckpt)(torch.from_numpy(x)).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(want - got).max() < 1e-4
