"""Every method trains on real CIFAR-10 images and its loss falls."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vision_benchmarks.config import PRESETS, PretrainConfig
from vision_benchmarks.methods import METHODS, build_method, resolve_method_defaults

STEPS = 25


def tiny_config(method: str, **overrides) -> PretrainConfig:
    """The cpu preset shrunk to a width-8 ConvNet and small queues, so a step takes milliseconds."""
    base = PretrainConfig(**PRESETS["cpu"])
    settings = dict(method=method, width=8, proj_hidden=64, queue_size=128, bank_negatives=256,
                    shuffle_bn_splits=2, permutations=10, bf16=False)
    return dataclasses.replace(base, **{**settings, **overrides})


def test_paper_defaults_fill_only_unset_fields():
    cfg = resolve_method_defaults(PretrainConfig(method="mocov2"))
    assert (cfg.temperature, cfg.key_momentum, cfg.queue_size) == (0.2, 0.999, 65536)
    assert resolve_method_defaults(PretrainConfig(method="mocov1")).temperature == 0.07
    assert resolve_method_defaults(PretrainConfig(method="supcon")).temperature == 0.1
    assert resolve_method_defaults(PretrainConfig(method="simclr", temperature=0.2)).temperature == 0.2
    byol = resolve_method_defaults(PretrainConfig(method="byol"))
    assert (byol.proj_hidden, byol.proj_dim, byol.target_momentum) == (4096, 256, 0.996)
    sgd = resolve_method_defaults(PretrainConfig(method="simclr", optimizer="sgd", batch_size=512))
    assert sgd.lr == pytest.approx(0.12)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_loss_falls_on_real_images(name, cifar_batch):
    images, labels = cifar_batch
    torch.manual_seed(0)
    method = build_method(tiny_config(name), num_classes=10, num_train_images=len(images))
    method.generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=2e-3)
    history = []
    for step in range(STEPS):
        out = method(images, labels, torch.arange(len(images)))
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        method.after_optimizer_step(step / STEPS)
        assert torch.isfinite(out["loss"])
        history.append(out["loss"].item())
    # Steps 5-9 as the reference: by then MoCo's queue holds real keys and PIRL's bank real rows.
    early, late = sum(history[5:10]) / 5, sum(history[-5:]) / 5
    assert late < early, f"{name}: loss went from {early:.4f} to {late:.4f}"


def test_simclrv2_backbone_is_encoder_plus_first_head_layer(cifar_batch):
    method = build_method(tiny_config("simclrv2"), 10, 64).eval()
    features = method.backbone()(cifar_batch[0][:4].float() / 255)
    assert features.shape == (4, method.backbone_dim) == (4, 64)


def test_moco_keys_come_back_in_batch_order(cifar_batch):
    method = build_method(tiny_config("mocov1", shuffle_bn_splits=4), 10, 64).eval()
    method.generator = torch.Generator().manual_seed(0)
    views = cifar_batch[0][:16].float() / 255
    assert torch.allclose(method.keys(views), method.key_net(views), atol=1e-5)


def test_supcon_refuses_unlabelled_batches(cifar_batch):
    method = build_method(tiny_config("supcon"), 10, 64)
    with pytest.raises(ValueError, match="labels"):
        method(cifar_batch[0], None, torch.arange(64))
