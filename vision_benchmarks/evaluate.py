"""Evaluate a pre-trained run's backbone on its own dataset, on other datasets (transfer), or
under corruptions (robustness).

    python -m vision_benchmarks.evaluate --run runs/simclr --protocol linear
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol knn
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol finetune --epochs 10
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol linear --label-fraction 0.01
    python -m vision_benchmarks.evaluate --run runs/simclr --dataset fashion-mnist --dataset catdog
    python -m vision_benchmarks.evaluate --run runs/simclr --dataset path/to/photos.zip --protocol finetune
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol robustness --baseline runs/supervised
    python -m vision_benchmarks.evaluate --weights docs/weights/vision/simclr.safetensors --protocol linear+knn

Protocols (``vision_benchmarks.evaluation.protocols``): ``linear`` = L-BFGS logistic regression on frozen
features computed once, L2 chosen on a held-out 10%; ``knn`` = weighted kNN, k = 200, t = 0.1;
``finetune`` = the whole backbone + a linear layer with SGD, optionally followed by SimCLRv2's
self-distillation on the unlabelled training images (``--distill-epochs``). ``--label-fraction`` trains the
classifier on a class-balanced share of the labels (the 1% / 10% semi-supervised protocol); the
kNN bank then holds only those images, and the subset is kept as a label index file
(``<run>/labels<fraction>_seed<seed>[_<dataset>].json``, or ``--label-index``) that later
evaluations read back. ``linear+knn`` runs both on one feature pass. ``--weights FILE``
evaluates an encoder weights file (:mod:`vision_benchmarks.weights`) instead of a run folder;
its results go to ``--out``.
Writes ``<run>/eval_<protocol>[_labels<fraction>].json``
(and for fine-tuning the per-epoch log under ``<run>/eval_finetune*/``).

``--dataset D`` (repeatable, or comma-separated) runs the protocols (default ``linear+knn``) on
other datasets (:mod:`vision_benchmarks.evaluation.transfer`: named sets, ``catdog``, or any folder / zip
laid out ``train/`` + ``val/`` or ``test/``, or one folder of class sub-folders split by a
seeded fraction), every image resized once to the run's ``image_size`` and converted to the
encoder's channels; it writes ``<run>/eval_transfer_<dataset>[_labels<fraction>].{json,csv}``
and prints a table. ``--protocol robustness`` (:mod:`vision_benchmarks.evaluation.robustness`) measures the
linear probe's accuracy on corrupted CIFAR-10 test images (CIFAR-10-C style).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from core_ssl.cli import run_command
from core_ssl.config import parse_config

from vision_benchmarks.evaluation.config import EvaluateConfig
from vision_benchmarks.evaluation.runner import evaluate

__all__ = ["EvaluateConfig", "gather_repeated", "main"]


def gather_repeated(argv: Sequence[str], flag: str) -> list[str]:
    """``argv`` with every ``flag X`` / ``flag=X`` merged into one ``flag X1,X2,...`` (the
    config parser keeps only the last of a repeated flag)."""
    values, rest = [], []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == flag and i + 1 < len(items):
            values.append(items[i + 1])
            i += 2
            continue
        if item.startswith(flag + "="):
            values.append(item[len(flag) + 1 :])
        else:
            rest.append(item)
        i += 1
    return rest + ([flag, ",".join(values)] if values else [])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return evaluate(parse_config(EvaluateConfig, gather_repeated(argv, "--dataset")))


if __name__ == "__main__":
    run_command(main)
