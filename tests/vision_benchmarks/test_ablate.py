"""SimCLR's ablations: the single transformations, the cells, and a tiny grid end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from core_ssl import data as data_mod
from core_ssl.cli import UsageError
from vision_benchmarks import ablate
from core_ssl.stats import contrast_interval, difference_interval
from vision_benchmarks.studies import ablation_cells
from vision_benchmarks.studies.ablation_claims import judge_ablation
from vision_benchmarks.studies.ablation_report import markdown, plot, summarize
from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods import build_method
from vision_benchmarks.methods.transforms import (Cutout, GaussianNoise, Rotate, Sobel, build_transform, parse_views,
                                          view_policies)

from .tiny_cifar import write_tiny_cifar


def test_cutout_fills_one_clipped_square_of_half_the_side(cifar_batch):
    images = cifar_batch[0][:32]
    out = Cutout()(images, torch.Generator().manual_seed(0))
    x = images.float() / 255
    changed = (out != x).any(1)  # (B, H, W)
    for b in range(len(images)):  # (no uint8 pixel is exactly 0.5, so "changed" is the filled region)
        rows, cols = torch.nonzero(changed[b], as_tuple=True)
        assert (out[b][:, changed[b]] == 0.5).all()
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert changed[b].sum() == height * width  # one filled rectangle ...
        assert (height == 16 or rows.min() == 0 or rows.max() == 31)  # ... 16 x 16 unless clipped at a border
        assert (width == 16 or cols.min() == 0 or cols.max() == 31) and max(height, width) <= 16
        assert torch.equal(out[b][:, ~changed[b]], x[b][:, ~changed[b]])


def test_sobel_is_the_gradient_magnitude_of_the_luma_scaled_to_its_maximum(cifar_batch):
    images = cifar_batch[0][:4]
    out = Sobel()(images)
    gray = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).double().numpy() / 255
    for b in range(len(images)):
        magnitude = np.hypot(ndimage.sobel(gray[b], axis=0, mode="nearest"), ndimage.sobel(gray[b], axis=1, mode="nearest"))
        expected = magnitude / magnitude.max()
        for channel in range(3):
            np.testing.assert_allclose(out[b, channel].numpy(), expected, atol=1e-5)
    assert torch.equal(Sobel()(torch.full((1, 3, 8, 8), 0.3)), torch.zeros(1, 3, 8, 8))  # flat: no edges


def test_noise_rotation_and_their_seeding(cifar_batch):
    images = cifar_batch[0]
    x = images.float() / 255
    noisy = GaussianNoise()(images, torch.Generator().manual_seed(1))
    inside = (x > 0.3) & (x < 0.7)  # far from the clipping
    residual = (noisy - x)[inside]
    assert abs(residual.mean()) < 2e-3 and 0.03 < residual.std() < 0.1  # sigma ~ U(0, 0.1): E sigma^2 = 1/300
    assert torch.equal(noisy, GaussianNoise()(images, torch.Generator().manual_seed(1)))
    rotated = Rotate()(images, torch.Generator().manual_seed(2))
    turns = []
    for b in range(len(images)):
        matches = [k for k in range(4) if torch.equal(rotated[b], torch.rot90(x[b], k, dims=(1, 2)))]
        turns.append(matches[0])
    assert set(turns) == {1, 2, 3}  # never the image itself; every quarter turn drawn in 64 images
    with pytest.raises(ValueError, match="square"):
        Rotate()(torch.zeros(1, 3, 8, 6))


def test_view_policies_one_branch_keeps_the_image_and_both_draws_twice(cifar_batch):
    images = cifar_batch[0][:16]
    generator = torch.Generator().manual_seed(0)
    first, second = view_policies("crop,color", 32, "one")
    assert torch.equal(first(images, generator), images.float() / 255)
    view = second(images, generator)
    assert view.shape == (16, 3, 32, 32) and 0 <= view.min() and view.max() <= 1
    first, second = view_policies("blur", 32, "both")
    assert first is second
    a, b = first(images, generator), second(images, generator)
    assert not torch.equal(a, b)  # independent sigma draws
    for name in ("crop", "color", "blur"):  # the SimCLRAugment-based ones are seeded too
        policy = build_transform(name, 32)
        assert torch.equal(policy(images, torch.Generator().manual_seed(3)), policy(images, torch.Generator().manual_seed(3)))
    assert parse_views(" crop , sobel ") == ["crop", "sobel"]
    for bad in ("", "crop,color,blur", "jpeg"):
        with pytest.raises(ValueError, match="one or two of crop"):
            parse_views(bad)


def test_simclr_takes_the_ablation_views_and_heads():
    cfg = PretrainConfig(method="simclr", width=4, proj_hidden=16, bf16="off", device="cpu")
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    for layers, dim, out_dim in ((0, 64, 32), (1, 64, 64), (2, 24, 24)):
        method = build_method(PretrainConfig(**{**cfg.__dict__, "proj_layers": layers, "proj_dim": dim,
                                                "views": "rotate", "views_branches": "one"}), 10, 8)
        method.generator = torch.Generator().manual_seed(0)
        z1, z2 = method(images, None, torch.arange(8))["embeddings"]
        assert z1.shape == (8, out_dim)
        linears = [m for m in method.projection.modules() if isinstance(m, torch.nn.Linear)]
        assert len(linears) == layers
    with pytest.raises(ValueError, match="--proj-layers must be >= 0"):
        build_method(PretrainConfig(**{**cfg.__dict__, "proj_layers": -1}), 10, 8)


def test_cells_of_each_ablation():
    grid = ablation_cells.augmentation_cells(["crop", "color", "sobel"], "one")
    assert [c.key for c in grid] == ["crop", "crop+color", "crop+sobel", "color+crop", "color", "color+sobel",
                                     "sobel+crop", "sobel+color", "sobel"]
    assert grid[1].flags == ["--views", "crop,color", "--views-branches", "one"] and grid[4].flags[1] == "color"
    heads = ablation_cells.head_cells(["none", "linear", "mlp"], [32, 128])
    assert [(c.key, c.flags) for c in heads] == [
        ("none", ["--proj-layers", "0"]), ("linear-32", ["--proj-layers", "1", "--proj-dim", "32"]),
        ("linear-128", ["--proj-layers", "1", "--proj-dim", "128"]), ("mlp-32", ["--proj-layers", "2", "--proj-dim", "32"]),
        ("mlp-128", ["--proj-layers", "2", "--proj-dim", "128"])]
    batches = ablation_cells.batch_cells([64, 1024], [5], base_lr=2e-3, scaling="sqrt")
    assert [c.params["lr"] for c in batches] == pytest.approx([2e-3 * math.sqrt(64 / 256), 2e-3 * math.sqrt(4)])
    assert ablation_cells.scaled_lr(0.3, 512, "linear") == pytest.approx(0.6) and ablation_cells.scaled_lr(0.3, 512, "none") == 0.3
    assert ablation_cells.preset_lr([]) == 2e-3 and ablation_cells.preset_lr(["--optimizer", "sgd"]) == pytest.approx(0.06)
    # every scaling starts from batch 256, also where the preset's own batch differs (paper: 512)
    assert ablation_cells.preset_lr(["--optimizer", "lars"]) == pytest.approx(1.0)
    assert ablation_cells.preset_lr([], "paper") == pytest.approx(0.06)
    lars = ablation_cells.batch_cells([256, 1024], [100], ablation_cells.preset_lr(["--optimizer", "lars"], "paper"), "linear")
    assert [c.params["lr"] for c in lars] == pytest.approx([1.0, 4.0])
    with pytest.raises(UsageError, match="--batch-size --seed after '--' would override"):
        ablation_cells.check_extra_flags("batch", ["--batch-size", "32", "--seed=3", "--width", "8"])
    with pytest.raises(UsageError, match="--preset goes before"):
        ablation_cells.check_extra_flags("head", ["--preset", "paper"])


TINY_PRETRAIN = ["--batch-size", "50", "--width", "4", "--proj-hidden", "16", "--knn-train-images", "100",
                 "--knn-test-images", "50", "--bf16", "off", "--log-every", "1", "--knn-every", "0"]


def test_a_tiny_augmentation_grid_end_to_end_writes_its_heat_map_and_resumes(cifar_test, tmp_path, monkeypatch):
    monkeypatch.setenv(data_mod.CACHE_ENV_VAR, str(tmp_path / "cache"))
    folder = write_tiny_cifar(cifar_test, tmp_path / "tiny")
    out = tmp_path / "grid"
    argv = ["augmentations", "--transforms", "crop", "color", "--epochs", "1", "--out", str(out), "--device", "cpu",
            "--eval-test-images", "80", "--", "--dataset", str(folder), *TINY_PRETRAIN]
    result = ablate.main(argv)

    cells = {c["cell"]: c for c in result["cells"]}
    assert set(cells) == {"crop", "crop+color", "color+crop", "color"}
    for key, cell in cells.items():
        saved = json.loads((out / "cells" / f"{key}-s0" / "cell.json").read_text())
        assert saved == cell and cell["steps"] == 4 and cell["test_images"] == 80 and cell["labelled_images"] == 200
        assert 0 <= cell["linear_top1"] <= 1 and 0 <= cell["knn_top1"] <= 1
        config = json.loads((out / "cells" / f"{key}-s0" / "config.json").read_text())
        assert config["views"] == key.replace("+", ",") and config["views_branches"] == "one"
    # the table is the figure: rows = first transformation, columns = second, then the row average
    table = (out / "results.md").read_text().splitlines()
    row = next(line for line in table if line.startswith("| crop |"))
    expected = [100 * cells["crop"]["linear_top1"], 100 * cells["crop+color"]["linear_top1"]]
    assert row == f"| crop | {expected[0]:.1f} | {expected[1]:.1f} | {np.mean(expected):.1f} |"
    with Image.open(out / "augmentations.png") as image:
        assert image.size[0] > 200 and image.size[1] > 150
    assert json.loads((out / "results.json").read_text())["rows"][1]["linear_top1"] == cells["crop+color"]["linear_top1"]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(ablation_cells.pretrain, "main", no_training)
    assert ablate.main(argv)["cells"] == result["cells"]  # every cell read back
    # --report-only reads the evaluated cells, skips the missing ones (seed 1) and trains nothing
    (out / "results.md").unlink()
    again = ablate.main([argv[0], "--report-only", "--seeds", "0", "1", *argv[1:]])
    assert again["cells"] == result["cells"] and again["claims"] == []  # one seed: nothing can be judged
    assert "None can be judged yet" in (out / "claims.md").read_text() and (out / "results.md").is_file()
    with pytest.raises(UsageError, match="no evaluated cells"):
        ablate.main(["augmentations", "--report-only", "--out", str(tmp_path / "empty")])


def _record(cell, seed, top1, **params):
    return {"ablation": "x", "cell": cell, "seed": seed, "linear_top1": top1, "knn_top1": top1 - 0.1, "l2": 1e-4,
            "steps": 10, "epochs_trained": params.get("epochs", 1.0), "train_minutes": 0.1, "run": "r", **params}


def test_head_and_batch_reports_give_the_figures_tables(tmp_path):
    head = [_record("none", s, 0.50 + 0.01 * s, head="none", dim=None) for s in (0, 1, 2)]
    head += [_record(f"{h}-{d}", s, base + 0.01 * s, head=h, dim=d)
             for h, base in (("linear", 0.55), ("mlp", 0.60)) for d in (32, 128) for s in (0, 1, 2)]
    rows = summarize(head, ["none", "linear-32", "linear-128", "mlp-32", "mlp-128"])
    assert rows[0]["linear_top1"] == pytest.approx(0.51) and rows[0]["linear_top1_seeds"] == pytest.approx([0.5, 0.51, 0.52])
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(3), s = 0.01
    assert (rows[0]["linear_top1_low"], rows[0]["linear_top1_high"]) == pytest.approx((0.51 - half, 0.51 + half))
    result = {"ablation": "head", "settings": {"seeds": [0, 1, 2]}, "budget": "--epochs 1", "rows": rows, "cells": head}
    table = markdown(result)
    assert "| head | d = 32 | d = 128 |" in table and "| mlp | 61.0 | 61.0 |" in table
    assert "No head (the loss on the encoder's features): 51.0" in table
    assert f"| none | 51.0 [{100 * (0.51 - half):.1f}, {100 * (0.51 + half):.1f}] | 41.0 | 50.0, 51.0, 52.0 |" in table
    batch = [_record(f"b{b}-e{e}", 0, 0.3 + b / 1000 + e / 100, batch_size=b, epochs=e, lr=1e-3)
             for b in (64, 256) for e in (5, 10)]
    result = {"ablation": "batch", "settings": {"seeds": [0]}, "budget": "epochs of each cell",
              "rows": summarize(batch, [c["cell"] for c in batch]), "cells": batch}
    assert "| 256 | 60.6 | 65.6 |" in markdown(result)
    paper = {**result, "settings": {"seeds": [0], "preset": "paper", "pretrain_flags": ["--optimizer", "lars"],
                                    "lr_scaling": "linear"}}
    assert ("SimCLR, `paper` preset, pre-training flags `--optimizer lars`, epochs of each cell, learning rate "
            "scaled from batch 256 by linear;") in markdown(paper)
    for name, outcome in (("head", {"rows": rows}), ("batch", result)):
        path = plot({**result, **outcome, "ablation": name}, tmp_path / f"{name}.png")
        with Image.open(path) as image:
            assert image.size[0] > 300


def test_the_papers_conclusions_are_judged_on_cells_with_two_seeds_or_more():
    # Figure 8 as the paper has it: mlp > linear > none, at every output size
    head = [_record("none", s, 0.40 + 0.01 * s, head="none", dim=None) for s in (0, 1, 2)]
    head += [_record(f"{h}-{d}", s, base + 0.01 * s, head=h, dim=d)
             for h, base in (("linear", 0.50), ("mlp", 0.53)) for d in (32, 128) for s in (0, 1, 2)]
    judged = judge_ablation("head", head)
    assert [(r["better"], r["worse"]) for r in judged] == [
        ("mlp-32", "linear-32"), ("linear-32", "none"), ("mlp-32", "none"),
        ("mlp-128", "linear-128"), ("linear-128", "none"), ("mlp-128", "none")]
    assert {r["verdict"] for r in judged} == {"holds"}
    expected = difference_interval([0.53, 0.54, 0.55], [0.50, 0.51, 0.52])
    assert judged[0]["difference"]["low"] == pytest.approx(expected.low)
    # a cell with one seed, or a missing cell, judges nothing
    assert judge_ablation("head", head[:3] + [_record("mlp-32", 0, 0.6, head="mlp", dim=32)]) == []
    assert judge_ablation("augmentations", [_record("crop", s, 0.4, first="crop", second="crop") for s in (0, 1)]) == []

    # Figure 9: batch 1024 beats 64 by 6 points at 2 epochs, by 1 point at 8; longer training helps both
    means = {(64, 2): 0.40, (1024, 2): 0.46, (64, 8): 0.50, (1024, 8): 0.51}
    noise = (-0.005, 0.0, 0.006)
    batch = [_record(f"b{b}-e{e}", s, m + noise[s], batch_size=b, epochs=e, lr=1e-3)
             for (b, e), m in means.items() for s in (0, 1, 2)]
    judged = {(r["better"], r["worse"]): r for r in judge_ablation("batch", batch)}
    assert set(judged) == {("b1024-e2", "b64-e2"), ("b64-e8", "b64-e2"), ("b1024-e8", "b1024-e2"),
                           ("gap-e2", "gap-e8")}
    gap = judged[("gap-e2", "gap-e8")]
    assert (gap["better_mean"], gap["worse_mean"]) == pytest.approx((0.06, 0.01))
    groups = [[means[k] + n for n in noise] for k in ((1024, 2), (64, 2), (1024, 8), (64, 8))]
    interaction = contrast_interval(groups, [1, -1, -1, 1])
    assert gap["difference"] == pytest.approx(interaction.as_dict()) and interaction.point == pytest.approx(0.05)
    assert gap["verdict"] == "holds" and judged[("b1024-e2", "b64-e2")]["verdict"] == "holds"


def test_two_runs_of_an_ablation_are_compared_cell_by_cell_with_welchs_interval(tmp_path, capsys):
    from vision_benchmarks.studies import ablation_compare

    first, second = tmp_path / "adamw", tmp_path / "lars"
    records = {first: {"b64-e2": [0.47, 0.48, 0.46], "b1024-e2": [0.44, 0.45, 0.43]},
               second: {"b64-e2": [0.42, 0.43, 0.44], "b1024-e2": [0.42], "b256-e2": [0.41, 0.42]}}
    for folder, cells in records.items():
        folder.mkdir()
        rows = [_record(cell, seed, values[seed]) for seed in range(3) for cell, values in cells.items()
                if seed < len(values)]  # seed-major, as ablate lists them
        (folder / "results.json").write_text(json.dumps({"cells": rows}))
    rows = ablation_compare.main([str(first), str(second), "--labels", "AdamW", "LARS"])
    expected = difference_interval([0.42, 0.43, 0.44], [0.47, 0.48, 0.46])
    assert rows[0]["cell"] == "b64-e2" and rows[0]["verdict"] == "fails"
    assert (rows[0]["low"], rows[0]["high"]) == pytest.approx((expected.low, expected.high))
    assert "verdict" not in rows[1] and rows[2] == {"cell": "b256-e2", "first": None, "second": [0.41, 0.42]}
    table = capsys.readouterr().out
    assert "| b64-e2 | 47.0 (3) | 43.0 (3) | -4.0 [" in table and "| b256-e2 | - | 41.5 (2) | - | needs two seeds" in table
    with pytest.raises(SystemExit):
        ablation_compare.main([str(first), str(tmp_path / "missing")])
    assert "holds no results.json" in capsys.readouterr().err
