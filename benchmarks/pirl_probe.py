"""Two diagnostics of PIRL's memory bank and of its evaluation, on CPU-sized budgets.

    python benchmarks/pirl_probe.py trace --steps 100 -- --train-images 5000 --seed 0
    python benchmarks/pirl_probe.py batchnorm --run runs/diag/pirl-n5k-e5 --train-images 10000

``trace`` trains PIRL (``--preset cpu --method pirl`` plus the flags after ``--``) for ``--steps``
steps with the pre-training's warm-up cosine learning rate and prints one JSON line every
``--every`` steps: the two loss terms, the noise mass c and, for each branch's normalised
embeddings q of the batch (``image``: v_I, ``jigsaw``: v_It), measured against the bank *before*
the step writes into it::

    pos = mean_i q_i . m_{I_i}            (the positive: the image's own bank row)
    neg = mean_{i,j} q_i . m_j            (1,024 rows drawn uniformly, a fixed generator)
    qq  = mean_{i != k} q_i . q_k         (near 1: the batch's embeddings share one direction)
    bank = mean_{j != l} m_j . m_l        (over the same 1,024 rows)

``batchnorm`` measures a run's encoder as the evaluation reads it (eval mode, the batch-norm
running statistics of training, which PIRL's tile batches also update) and after re-estimating
those statistics on whole training images alone (running averages reset, then one train-mode
pass over ``--calibration-images`` standardised images): the weighted kNN top-1 (k = 200,
t = 0.1) and the linear-probe top-1 (``vision_benchmarks.evaluation.protocols.linear_probe``),
with a fixed subset of ``--train-images`` training images as the labelled set and all test
images as queries.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core_ssl import monitor
from core_ssl.features import extract_features
from core_ssl.schedules import warmup_cosine_factor
from vision_benchmarks.datasets import fixed_subset, load_run_split
from vision_benchmarks.evaluation.protocols import linear_probe
from vision_benchmarks.pretrain import PIPELINE, build_setup, load_train_test
from vision_benchmarks.pretrained import load_pretrained

BANK_SAMPLE = 1024


def mean_off_diagonal(x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """``mean_{i != k} x_i . x_k`` of row-normalised x, or ``mean_{i,j} x_i . y_j`` given y."""
    x = F.normalize(x.float(), dim=1)
    if y is not None:
        return (x @ F.normalize(y.float(), dim=1).T).mean().item()
    n = len(x)
    return ((x @ x.T).sum().item() - n) / (n * (n - 1))


def branch_cosines(query: torch.Tensor, positives: torch.Tensor, rows: torch.Tensor) -> dict[str, float]:
    """``pos``, ``neg`` and ``qq`` of one branch's embeddings (see the module docstring)."""
    q = F.normalize(query.detach().float(), dim=1)
    return {"pos": (q * F.normalize(positives, dim=1)).sum(1).mean().item(),
            "neg": mean_off_diagonal(q, rows), "qq": mean_off_diagonal(q)}


def trace(steps: int, every: int, flags: list[str]) -> None:
    """Train PIRL for ``steps`` steps and print the bank's cosines (module docstring)."""
    cfg = PIPELINE.parse(["--preset", "cpu", "--method", "pirl", "--out", "runs/pirl_probe"] + flags)
    torch.manual_seed(cfg.seed)
    train, test = load_train_test(cfg)
    setup = build_setup(cfg, train, test, 0, 1, torch.device("cpu"), False)
    method, rows_generator = setup.method, torch.Generator().manual_seed(1)
    warmup = int(cfg.warmup_fraction * steps)
    step = 0
    while step < steps:
        for images, labels, indices in setup.batches:
            for group, base_lr in zip(setup.optimizer.param_groups, setup.base_lrs):
                group["lr"] = base_lr * warmup_cosine_factor(step, steps, warmup)
            positives = method.bank[indices].clone()
            rows = method.bank.bank[torch.randint(len(method.bank), (BANK_SAMPLE,), generator=rows_generator)]
            out = setup.model(images, labels, indices)
            setup.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            setup.optimizer.step()
            if step % every == 0 or step == steps - 1:
                record = {"step": step, "image_term": out["image_term"].item(),
                          "jigsaw_term": out["jigsaw_term"].item(), "noise_mass": float(method.nce_noise_mass),
                          "bank": mean_off_diagonal(rows)}
                for name, query in zip(("image", "jigsaw"), out["embeddings"]):
                    record.update({f"{name}_{k}": v for k, v in branch_cosines(query, positives, rows).items()})
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}), flush=True)
            step += 1
            if step == steps:
                break


def recalibrate_batchnorm(network: nn.Module, images: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """A copy of ``network`` whose batch-norm running statistics are the plain average of its
    train-mode batch statistics over ``images`` (uint8; ``network`` normalises them itself)."""
    network = copy.deepcopy(network)
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    network.train()
    with torch.no_grad():
        for chunk in images.split(batch_size):
            network(chunk)
    return network.eval()


def scores(network: nn.Module, train, test) -> dict[str, float]:
    """kNN (k = 200, t = 0.1) and linear-probe top-1 of ``network``'s features."""
    train_features = extract_features(network, train.images, "cpu")
    test_features = extract_features(network, test.images, "cpu")
    knn = monitor.knn_accuracy(train_features, train.labels, test_features, test.labels, test.num_classes,
                               k=200, temperature=0.1)
    linear = linear_probe(train_features, train.labels, test_features, test.labels, test.num_classes).top1
    return {"knn_top1": round(knn, 4), "linear_top1": round(linear, 4)}


def batchnorm(run: Path, train_images: int, calibration_images: int) -> None:
    """Print the run's scores with stored and with image-only batch-norm statistics."""
    method, cfg = load_pretrained(run, torch.device("cpu"))
    full_train = load_run_split(cfg.dataset, "train", root=cfg.data_root)
    train, test = fixed_subset(full_train, train_images, 1), load_run_split(cfg.dataset, "test", root=cfg.data_root)
    backbone = method.backbone()
    calibrated = recalibrate_batchnorm(backbone, fixed_subset(full_train, calibration_images, 2).images)
    print(json.dumps({"run": str(run), "train_images": train_images, "test_images": len(test),
                      "calibration_images": calibration_images, "stored_statistics": scores(backbone, train, test),
                      "image_statistics": scores(calibrated, train, test)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    traced = commands.add_parser("trace", help="train and print the bank's cosines")
    traced.add_argument("--steps", type=int, default=100)
    traced.add_argument("--every", type=int, default=10)
    traced.add_argument("flags", nargs="*", help="pre-training flags (after --)")
    measured = commands.add_parser("batchnorm", help="scores with stored and image-only batch-norm statistics")
    measured.add_argument("--run", type=Path, required=True)
    measured.add_argument("--train-images", type=int, default=10000)
    measured.add_argument("--calibration-images", type=int, default=5000)
    args = parser.parse_args()
    if args.command == "trace":
        trace(args.steps, args.every, args.flags)
    else:
        batchnorm(args.run, args.train_images, args.calibration_images)


if __name__ == "__main__":
    main()
