"""Encoder weights files: export of a run's backbone, loading without the run, the stored kNN
check measured again, and evaluate --weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from core_ssl import data as data_mod
from core_ssl.checkpoint import CheckpointError, export_weights
from core_ssl.features import extract_features
from core_ssl.monitor import knn_accuracy
from core_ssl.weights import (EncoderNetwork, describe, load_encoder_weights, read_weights_metadata, save_encoder_weights,
                              verify_knn_check)
from vision_benchmarks import evaluate, pretrain, pretrained, semisup, weights
from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods import build_method

from .tiny_cifar import write_tiny_cifar


@pytest.fixture(scope="module")
def tiny(cifar_test, tmp_path_factory):
    """A 200 / 100 image CIFAR-10 folder and a SimCLRv2 run pre-trained on it for 8 steps."""
    root = tmp_path_factory.mktemp("weights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(data_mod.CACHE_ENV_VAR, str(root / "cache"))
        folder = write_tiny_cifar(cifar_test, root / "tiny")
        run = root / "simclrv2"
        pretrain.pretrain(PretrainConfig(method="simclrv2", dataset=str(folder), batch_size=50, epochs=2, width=4,
                                         proj_hidden=16, knn_train_images=100, knn_test_images=50, bf16="off",
                                         device="cpu", out=run, log_every=1))
        yield folder, run


def _run_method(run):
    method, _ = pretrained.load_pretrained(run, torch.device("cpu"))
    return method


def test_exported_weights_rebuild_the_backbone_and_reproduce_their_stored_knn_top1(tiny, tmp_path):
    folder, run = tiny
    path = tmp_path / "simclrv2.safetensors"
    result = weights.main(["--run", str(run), "--out", str(path), "--check-bank", "120", "--check-queries", "80"])
    metadata = read_weights_metadata(path)
    architecture = json.loads(metadata["architecture"])
    # SimCLRv2's backbone: the ConvNet (8 x width 4 = 32 features) and the head's first block 32 -> 16
    assert architecture == {"encoder": "convnet", "encoder_kwargs": {"width": 4}, "head": [[32, 16, True]]}
    assert (metadata["input_normalization"], metadata["feature_dim"], metadata["dtype"]) == ("none", "16", "float16")
    with safe_open(str(path), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    assert result["megabytes"] < 0.1

    loaded = load_encoder_weights(path)
    assert loaded.info["method"] == "simclrv2" and loaded.info["config"]["proj_hidden"] == 16
    check = loaded.knn_check
    assert (len(check["bank"]["indices"]), len(check["queries"]["indices"])) == (120, 80)
    stored, measured = verify_knn_check(loaded)
    assert stored == result["knn_check"]["top1"] and measured == pytest.approx(stored, abs=1e-9)
    listed = describe([path])[0]
    assert (listed["knn_check_top1"], listed["feature_dim"], listed["info"]["method"]) == (stored, 16, "simclrv2")

    # the loaded network gives the run's backbone features (to fp16 rounding of the weights) ...
    images = data_mod.load_dataset(str(folder), "test").images
    backbone = _run_method(run).backbone()
    expected = extract_features(backbone, images, torch.device("cpu"))
    got = extract_features(loaded.network, images, torch.device("cpu"))
    assert torch.allclose(got, expected, atol=0.02 * expected.abs().max().item())
    # ... and the stored top-1 is the weighted kNN of those features, restated with the protocol's kNN
    train = data_mod.load_dataset(str(folder), "train")
    bank, queries = torch.tensor(check["bank"]["indices"]), torch.tensor(check["queries"]["indices"])
    restated = knn_accuracy(extract_features(loaded.network, train.images[bank], torch.device("cpu")), train.labels[bank],
                            got[queries], data_mod.load_dataset(str(folder), "test").labels[queries], 10, k=120)
    assert restated == pytest.approx(stored, abs=1e-9)


def test_per_image_normalisation_travels_with_the_weights(tmp_path, cifar_batch):
    """A Jigsaw encoder learnt on per-image standardised inputs: the rebuilt network standardises
    raw images itself and gives the method's backbone features exactly (fp32 file)."""
    torch.manual_seed(0)
    method = build_method(PretrainConfig(method="jigsaw", width=4, bf16="off", device="cpu"), 10, 1)
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in method.encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    network = weights.encoder_network(method)
    path = save_encoder_weights(network, tmp_path / "jigsaw.safetensors", {"method": "jigsaw"}, dtype=torch.float32)
    loaded = load_encoder_weights(path)
    images, _ = cifar_batch
    assert loaded.input_normalization == "per_image"
    expected = extract_features(method.backbone(), images, torch.device("cpu"))
    assert torch.allclose(extract_features(loaded.network, images, torch.device("cpu")), expected, atol=1e-5)
    unnormalised = extract_features(loaded.network.encoder, images, torch.device("cpu"))
    assert not torch.allclose(unnormalised, expected, atol=1e-2)  # the normalisation matters


def test_evaluate_weights_gives_the_run_s_results_and_keeps_the_label_index(tiny, tmp_path):
    folder, run = tiny
    path = tmp_path / "fp32.safetensors"
    weights.main(["--run", str(run), "--out", str(path), "--no-fp16", "--check-bank", "50", "--check-queries", "20"])
    args = ["--protocol", "linear+knn", "--label-fraction", "0.5", "--device", "cpu"]
    from_run = evaluate.main(["--run", str(run), *args])
    from_file = evaluate.main(["--weights", str(path), "--out", str(tmp_path / "eval"), *args])
    for protocol in ("linear", "knn"):
        assert from_file[protocol]["top1"] == pytest.approx(from_run[protocol]["top1"], abs=1e-9)
        assert from_file[protocol]["labelled_images"] == 100 and from_file[protocol]["weights"] == str(path)
    saved = json.loads((tmp_path / "eval" / "labels0.5_seed0.json").read_text())
    assert saved == json.loads((run / "labels0.5_seed0.json").read_text())  # the same seeded subset
    assert json.loads((tmp_path / "eval" / "eval_knn_labels0.5.json").read_text())["top1"] == from_file["knn"]["top1"]
    # an index file drawn for another seed is refused rather than silently replaced
    with pytest.raises(ValueError, match="seed 0, not fraction 0.5 and seed 1"):
        evaluate.main(["--weights", str(path), "--out", str(tmp_path / "eval"), "--seed", "1",
                       "--label-index", str(tmp_path / "eval" / "labels0.5_seed0.json"), *args])


def test_files_that_are_not_encoder_weights_are_refused_with_the_fix(tiny, tmp_path):
    _, run = tiny
    with pytest.raises(CheckpointError, match="python -m vision_benchmarks.weights"):
        load_encoder_weights(run / "backbone.safetensors")  # weights only, no architecture
    with pytest.raises(CheckpointError, match="no weights file"):
        load_encoder_weights(tmp_path / "missing.safetensors")
    network = EncoderNetwork({"encoder": "convnet", "encoder_kwargs": {"width": 4}, "head": [[32, 8, False]]})
    path = save_encoder_weights(network, tmp_path / "w.safetensors")
    state = {k: v for k, v in network.state_dict().items() if not k.startswith("head")}
    export_weights(state, path, read_weights_metadata(path))  # the head's tensors lost
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_encoder_weights(path)
    with pytest.raises(ValueError, match="does not follow features of size 32"):
        EncoderNetwork({"encoder": "convnet", "encoder_kwargs": {"width": 4}, "head": [[16, 8, True]]})
    with pytest.raises(FileNotFoundError, match="neither a run folder nor an encoder weights file"):
        pretrained.load_source(tmp_path / "nowhere", torch.device("cpu"))


def test_semisup_fine_tunes_a_weights_file_as_it_fine_tunes_the_run(tiny, tmp_path):
    folder, run = tiny
    path = tmp_path / "fp32.safetensors"
    weights.main(["--run", str(run), "--out", str(path), "--no-fp16", "--check-bank", "50", "--check-queries", "20"])
    common = ["--fractions", "0.2", "--seeds", "0", "--epochs", "2", "--batch-size", "20", "--no-scratch",
              "--distill", "--device", "cpu", "--bf16", "off"]
    from_run = semisup.main(["--runs", f"v2={run}", "--out", str(tmp_path / "a"), *common])
    from_file = semisup.main(["--runs", f"v2={path}", "--out", str(tmp_path / "b"), *common])
    assert from_file["cells"][0]["top1"] == pytest.approx(from_run["cells"][0]["top1"], abs=1e-9)
    assert from_file["cells"][0]["method"] == "simclrv2" and from_file["cells"][0]["labelled_images"] == 40


def test_median_seed_cells_pick_each_method_s_middle_seed_and_skip_the_random_encoder():
    from benchmarks.vision_table import median_seed_cells

    def row(method, values):
        return {"method": method, "cells": [{"seed": s, "linear_top1": v} for s, v in enumerate(values)]}

    chosen = median_seed_cells([row("random", [0.4, 0.5, 0.3]), row("simclr", [0.52, 0.55, 0.50]),
                                row("byol", [0.4, 0.4, 0.4]), row("rotnet", [0.6, 0.5])])
    assert set(chosen) == {"simclr", "byol", "rotnet"}
    assert chosen["simclr"]["seed"] == 0          # 0.52 is the middle of 0.50, 0.52, 0.55
    assert chosen["byol"]["seed"] == 1            # ties: by seed, the middle one
    assert chosen["rotnet"]["seed"] == 1          # two seeds: the lower of the two (0.5)
    assert "random" not in chosen and median_seed_cells([row("random_per_image", [0.4])]) == {}


def test_shipping_note_warns_only_below_the_random_encoder_on_the_same_input():
    """Jigsaw and PIRL train and score on per-image standardised images: they are compared with
    the random encoder probed that way, every other method with the one on the images as they are."""
    from benchmarks.vision_table import shipping_note

    rows = [{"method": "random", "linear_top1": 0.4468}, {"method": "random_per_image", "linear_top1": 0.3877},
            {"method": "simclr", "linear_top1": 0.5388}, {"method": "pirl", "linear_top1": 0.3300},
            {"method": "jigsaw", "linear_top1": 0.4480}]
    assert shipping_note(rows[2], rows) == "" and shipping_note(rows[4], rows) == ""  # jigsaw: above 0.388
    note = shipping_note(rows[3], rows)
    assert note.startswith("**below the random encoder** (linear top-1 0.330 against 0.388")
    assert "not a useful starting point" in note and "Known limits" in note
    assert "against 0.447" in shipping_note({"method": "simclr", "linear_top1": 0.40}, rows)
    assert shipping_note(rows[3], [rows[0], *rows[2:]]) == ""  # no random row on its input: nothing to compare with


def test_vision_table_ships_the_median_seed_encoder_with_its_listing(tiny, tmp_path):
    from benchmarks.vision_table import ship_weights

    _, run = tiny
    cells = [{"label": "SimCLRv2", "method": "simclrv2", "seed": seed, "run": str(run), "linear_top1": top1,
              "knn_top1": 0.3} for seed, top1 in ((0, 0.31), (1, 0.29), (2, 0.35))]
    text = ship_weights([{"method": "simclrv2", "cells": cells}], tmp_path / "shipped")
    path = tmp_path / "shipped" / "simclrv2.safetensors"
    loaded = load_encoder_weights(path)
    stored, measured = verify_knn_check(loaded)
    assert measured == pytest.approx(stored, abs=1e-9)
    listing = (tmp_path / "shipped" / "weights.md").read_text()
    assert listing == text and "| SimCLRv2 | `simclrv2.safetensors` |" in listing
    assert "(0) | 0.3100 | 0.3000 |" in listing and f"{stored:.4f} |" in listing
