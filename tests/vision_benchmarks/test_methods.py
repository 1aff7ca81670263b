"""Every method trains on real CIFAR-10 images and its loss falls; its settings are config flags."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch

from core_ssl.augment import to_float_image
from core_ssl.features import extract_features
from core_ssl.config import build_parser, load_config, parse_config, save_config
from vision_benchmarks.config import PRESETS, PretrainConfig, build_pretrain_config
from vision_benchmarks.methods import (METHODS, Method, Setting, build_method, fit_to_training_set, method_settings,
                                       resolve_method_defaults)
from vision_benchmarks.methods.base import INPUT_NORMALIZATIONS
from vision_benchmarks.methods.simclr import SimCLR
from vision_benchmarks.methods.moco import MAX_QUEUE_SHARE

STEPS = 25


def tiny_config(method: str, **overrides) -> PretrainConfig:
    """The cpu preset shrunk to a width-8 ConvNet and small queues, so a step takes milliseconds."""
    base = PretrainConfig(**PRESETS["cpu"])
    settings = dict(method=method, width=8, proj_hidden=64, queue_size=128, bank_negatives=256,
                    shuffle_bn_splits=2, permutations=10, bf16="off")
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
    lars = resolve_method_defaults(PretrainConfig(method="simclr", optimizer="lars", batch_size=512))
    assert (lars.lr, lars.weight_decay) == pytest.approx((2.0, 1e-4))  # SimCLR's CIFAR-10 command, linear scaling
    pirl = resolve_method_defaults(PretrainConfig(method="pirl"))
    assert (pirl.pirl_loss, pirl.permutation_rule) == ("nce", "average")
    assert resolve_method_defaults(PretrainConfig(method="jigsaw")).permutation_rule == "average"
    assert resolve_method_defaults(PretrainConfig(method="context_encoder")).discriminator_lr == 2e-4


def test_every_declared_setting_is_a_flag_and_a_config_field_of_its_type():
    fields = {f.name: f for f in dataclasses.fields(PretrainConfig)}
    for name, setting in method_settings().items():
        assert fields[name].default == setting.default
        assert fields[name].metadata.get("choices") == (None if setting.choices is None else list(setting.choices))
        value = setting.choices[-1] if setting.choices else {int: "3", float: "0.25", str: "x"}.get(setting.kind)
        flag = ["--" + name.replace("_", "-")] if setting.kind is bool else ["--" + name.replace("_", "-"), value]
        parsed = getattr(parse_config(PretrainConfig, flag), name)
        assert parsed == (True if setting.kind is bool else setting.kind(value)), name
    for method in METHODS.values():  # every published value is of a declared setting
        assert set(method.paper_defaults) <= set(method.all_settings()), method.name


class _Toy(Method):
    """A method written after the registry: one class, one new setting, one published value."""

    name = "toy"
    settings = {"toy_scale": Setting(float, "toy: scale of nothing in particular")}
    paper_defaults = dict(toy_scale=0.3, temperature=0.2)


def test_a_new_method_is_one_class_whose_settings_become_flags_and_config_keys(monkeypatch, tmp_path):
    monkeypatch.setitem(METHODS, "toy", _Toy)  # its line in the registry
    config = build_pretrain_config(METHODS)
    cfg = resolve_method_defaults(parse_config(config, ["--method", "toy"]))
    assert (cfg.toy_scale, cfg.temperature) == (0.3, 0.2)
    given = resolve_method_defaults(parse_config(config, ["--method", "toy", "--toy-scale", "0.7"]))
    assert given.toy_scale == 0.7
    save_config(given, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["toy_scale"] == 0.7
    assert load_config(config, tmp_path) == given
    assert "toy 0.3" in build_parser(config).format_help().replace("\n", " ")
    assert not hasattr(PretrainConfig(), "toy_scale")  # the registry's config knows nothing of it


def test_undeclared_published_values_and_conflicting_declarations_are_refused():
    with pytest.raises(TypeError, match="declare them in _Typo.settings"):
        class _Typo(Method):
            paper_defaults = dict(temprature=0.1)
    class _Other(Method):
        name = "other"
        settings = {"views": Setting(int, "another meaning")}
    with pytest.raises(TypeError, match="'views' is declared differently by SimCLR and _Other"):
        method_settings({"simclr": SimCLR, "other": _Other})


def test_a_config_json_of_an_older_run_still_loads(tmp_path):
    """The config.json of a SimCLR run written before --views, --proj-layers and --aug-backend
    existed (keys as saved then): it loads, the newer fields take their defaults."""
    old = {"adversarial_weight": None, "bank_momentum": None, "bank_negatives": 4096, "batch_size": 256,
           "bf16": "auto", "blur": False, "channels_last": True, "checkpoint_minutes": 5.0, "cifar_stem": True,
           "color_strength": 0.5, "data_root": None, "dataset": "cifar10", "device": "auto",
           "discriminator_lr": None, "encoder": "convnet", "epochs": 0, "image_size": 32, "jigsaw_weight": None,
           "key_momentum": 0.99, "knn_every": 0, "knn_test_images": 2000, "knn_train_images": 10000,
           "log_every": 20, "lr": 0.002, "mask": None, "method": "simclr", "minutes": None, "optimizer": "adamw",
           "out": "runs/old", "permutation_rule": None, "permutations": None, "pirl_loss": None, "proj_dim": 128,
           "proj_hidden": 512, "queue_size": 4096, "resume": False, "seed": 0, "shuffle_bn_splits": 4,
           "target_momentum": None, "temperature": 0.5, "train_images": None, "warmup_fraction": 0.02,
           "weight_decay": 0.0001, "width": 32}
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = load_config(PretrainConfig, tmp_path)
    assert {k: getattr(cfg, k) for k in old if k != "out"} == {k: v for k, v in old.items() if k != "out"}
    assert (cfg.views, cfg.views_branches, cfg.proj_layers, cfg.aug_backend) == (None, "one", None, "auto")
    assert build_method(dataclasses.replace(cfg, width=8), 10, 64).cfg.proj_hidden == 512


def test_methods_complete_their_config_with_derived_settings():
    paper = dataclasses.replace(PretrainConfig(**PRESETS["paper"]), method="simclr", encoder="convnet", width=8)
    assert paper.proj_hidden is None and paper.blur is None
    method = build_method(paper, 10, 64)
    assert (method.cfg.proj_hidden, method.cfg.blur) == (method.feature_dim, False) == (64, False)
    assert build_method(dataclasses.replace(paper, method="mocov2", image_size=64), 10, 64).cfg.blur is True
    assert build_method(dataclasses.replace(paper, method="mocov1", image_size=64), 10, 64).cfg.blur is False


def _encoder_inputs(method, run) -> list[torch.Tensor]:
    """Every input the method's encoder receives while ``run()`` runs, as float images."""
    seen: list[torch.Tensor] = []
    hook = method.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    try:
        run()
    finally:
        hook.remove()
    return [to_float_image(x) if x.dtype == torch.uint8 else x.float() for x in seen]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_evaluation_input_is_normalised_like_the_training_input(name, cifar_batch):
    """What the probe, kNN and fine-tuning feed the encoder (through ``backbone()``) is the raw
    image passed through the very normalisation the training step applied to its views: the
    declared function maps training inputs to themselves (they are already in its image), maps
    the raw test images to exactly what the encoder sees at evaluation, and both populations have
    the same pixel statistics (Jigsaw trained on standardised tiles but probed on raw images
    would fail: mean 0, std 1 against mean 0.47, std 0.25)."""
    images, labels = cifar_batch
    torch.manual_seed(0)
    method = build_method(tiny_config(name), 10, len(images))
    method.generator = torch.Generator().manual_seed(0)
    normalize = INPUT_NORMALIZATIONS[method.input_normalization]
    train = _encoder_inputs(method, lambda: method(images, labels, torch.arange(len(images))))
    evaluation = _encoder_inputs(method, lambda: extract_features(method.backbone(), images, torch.device("cpu")))
    assert len(train) >= 1 and len(evaluation) == 1
    assert torch.allclose(evaluation[0], normalize(images), atol=1e-5)
    for x in train:
        assert torch.allclose(normalize(x), x, atol=1e-4)
    train_pixels = torch.cat([x.flatten() for x in train])
    assert abs(train_pixels.mean() - evaluation[0].mean()) < 0.05
    assert 0.75 < train_pixels.std() / evaluation[0].std() < 1.33


@pytest.mark.parametrize("name", ["jigsaw", "pirl"])
def test_jigsaw_and_pirl_standardise_every_encoder_input(name, cifar_batch):
    images, labels = cifar_batch
    method = build_method(tiny_config(name), 10, len(images))
    method.generator = torch.Generator().manual_seed(0)
    assert method.input_normalization == "per_image"
    train = _encoder_inputs(method, lambda: method(images, labels, torch.arange(len(images))))
    assert {x.shape[-1] for x in train} == ({8} if name == "jigsaw" else {8, 32})  # tiles (and images)
    for x in train:
        std, mean = torch.std_mean(x, dim=(-2, -1), correction=0)
        assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
        flat = std == 0  # a tile without any pattern (sky) is all zeros
        assert torch.allclose(std[~flat], torch.ones_like(std[~flat]), atol=1e-3)
        assert flat.float().mean() < 0.05


def test_moco_queue_is_capped_below_the_training_set_with_a_warning():
    paper = resolve_method_defaults(PretrainConfig(**{**PRESETS["paper"], "method": "mocov2"}))
    assert paper.queue_size == 65536
    with pytest.warns(UserWarning, match="capped at 5000"):
        capped = fit_to_training_set(paper, 50_000)
    assert capped.queue_size == int(MAX_QUEUE_SHARE * 50_000) == 5000 < 50_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # below the cap: unchanged and silent, also on a second pass
        assert fit_to_training_set(capped, 50_000) == capped
        cpu = fit_to_training_set(PretrainConfig(**{**PRESETS["cpu"], "method": "mocov1"}), 50_000)
        assert cpu.queue_size == 4096
        simclr = fit_to_training_set(PretrainConfig(method="simclr", queue_size=10**6), 100)
        assert simclr.queue_size == 10**6  # other methods have no queue to cap
    with pytest.warns(UserWarning):
        assert fit_to_training_set(paper, 5).queue_size == 1


def test_moco_v1_views_are_the_official_v1_recipe():
    views = build_method(tiny_config("mocov1"), 10, 64).views
    assert views.grayscale_first and views.grayscale_p == 0.2 and views.color_p == 1.0
    assert views.jitter_strengths == dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4)
    assert views.scale == (0.2, 1.0) and views.blur_p == 0.0


@pytest.mark.parametrize("optimizer, lr", [("adamw", 2e-3), ("sgd", 0.12)])
def test_context_encoder_discriminator_has_its_own_adam(optimizer, lr, cifar_batch):
    """Adam's first step moves every parameter with a gradient by lr * sign(g): the
    discriminator moves by 2e-4 whatever the main optimiser and its learning rate."""
    method = build_method(tiny_config("context_encoder", optimizer=optimizer, lr=lr), 10, 64)
    adam = method.auxiliary_optimizers()["discriminator"]
    assert isinstance(adam, torch.optim.Adam)
    assert adam.param_groups[0]["lr"] == 2e-4 and adam.param_groups[0]["betas"] == (0.5, 0.999)
    assert not {id(p) for p in method.discriminator.parameters()} & {id(p) for p in method.trainable_parameters()}
    before = [p.detach().clone() for p in method.discriminator.parameters()]
    views = cifar_batch[0][:16].float() / 255
    method.train_discriminator(views, torch.rand_like(views))
    steps = torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(method.discriminator.parameters(), before)])
    # |step| = lr |g| / (|g| + 1e-8): lr itself, except for the few gradients near Adam's eps
    assert steps.max() == pytest.approx(2e-4, rel=1e-4)
    assert (steps > 0.95 * 2e-4).float().mean() > 0.95
    custom = build_method(tiny_config("context_encoder", discriminator_lr=1e-3), 10, 64)
    assert custom.auxiliary_optimizers()["discriminator"].param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="discriminator-lr"):
        build_method(tiny_config("context_encoder", discriminator_lr=0.0), 10, 64)


def test_pirl_estimates_the_nce_noise_mass_once(cifar_batch):
    images, labels = cifar_batch
    method = build_method(tiny_config("pirl"), 10, len(images))
    method.generator = torch.Generator().manual_seed(0)
    assert method.cfg.pirl_loss == "nce" and float(method.nce_noise_mass) == 0
    method(images, labels, torch.arange(len(images)))
    first = float(method.nce_noise_mass)
    # random unit vectors in 128-d: s ~ N(0, 1/128), so E exp(s/t) = exp(1 / (2 * 128 * t^2)) ~ 2.2
    assert 256 * 1.5 < first < 256 * 3.5
    method(images, labels, torch.arange(len(images)))
    assert float(method.nce_noise_mass) == first
    older = {k: v for k, v in method.state_dict().items() if k != "nce_noise_mass"}  # a run saved before NCE
    fresh = build_method(tiny_config("pirl"), 10, len(images))
    fresh.load_state_dict(older)
    assert float(fresh.nce_noise_mass) == 0 and torch.equal(fresh.bank.bank, method.bank.bank)
    infonce = build_method(tiny_config("pirl", pirl_loss="infonce"), 10, len(images))
    infonce.generator = torch.Generator().manual_seed(0)
    assert torch.isfinite(infonce(images, labels, torch.arange(len(images)))["loss"])
    assert float(infonce.nce_noise_mass) == 0


def test_pirl_step_reads_the_bank_rows_of_its_indices_then_writes_the_image_embeddings(cifar_batch):
    """PIRL's step: both terms take the bank rows m_I of the batch's dataset indices as
    positives and bank rows as negatives, all as they were *before* the step, without gradient;
    L = w * L(v_It) + (1 - w) * L(v_I); afterwards m_I = normalize(0.5 m_I + 0.5 v_I / |v_I|)
    for exactly those rows."""
    images, labels = cifar_batch
    method = build_method(tiny_config("pirl"), 10, 3 * len(images))
    method.generator = torch.Generator().manual_seed(0)
    indices = torch.randperm(3 * len(images), generator=torch.Generator().manual_seed(1))[: len(images)]
    assert method.cfg.bank_momentum == 0.5
    before = method.bank.bank.clone()
    seen, contrast = [], method.contrast
    method.contrast = lambda q, k, n: seen.append((q, k, n)) or contrast(q, k, n)
    out = method(images, labels, indices)
    (jigsaw_query, jigsaw_key, jigsaw_negatives), (image_query, image_key, image_negatives) = seen
    assert torch.equal(jigsaw_key, before[indices]) and torch.equal(image_key, before[indices])
    assert torch.equal(jigsaw_negatives, image_negatives)
    assert all((before == row).all(1).any() for row in image_negatives)
    assert not (image_key.requires_grad or image_negatives.requires_grad)
    assert torch.equal(out["embeddings"][0], image_query) and torch.equal(out["embeddings"][1], jigsaw_query)
    w = method.cfg.jigsaw_weight
    expected = w * contrast(jigsaw_query, jigsaw_key, image_negatives) + (1 - w) * contrast(image_query, image_key,
                                                                                          image_negatives)
    assert torch.allclose(out["loss"], expected)
    written = torch.nn.functional.normalize(
        0.5 * before[indices] + 0.5 * torch.nn.functional.normalize(image_query.detach(), dim=1), dim=1)
    assert torch.allclose(method.bank.bank[indices], written, atol=1e-6)
    untouched = torch.ones(len(before), dtype=torch.bool)
    untouched[indices] = False
    assert torch.equal(method.bank.bank[untouched], before[untouched])
    out["loss"].backward()
    assert method.bank.bank.grad is None and method.image_head.weight.grad is not None


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
