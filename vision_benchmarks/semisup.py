"""The semi-supervised comparison of SimCLRv2 (Chen et al. 2020b, Table 1 / Figure 1 at small
scale): top-1 with 1% and 10% of the labels for a network trained from scratch, SimCLR
fine-tuned, SimCLRv2 fine-tuned from the middle of its head, and SimCLRv2 after distillation.

    python -m vision_benchmarks.semisup --runs simclr=runs/simclr simclrv2=runs/simclrv2 \\
        --fractions 0.01 0.1 --seeds 0 1 2 --out runs/semisup
    python -m vision_benchmarks.semisup --runs simclr=docs/weights/vision/simclr.safetensors ...   # shipped weights

``--runs NAME=PATH``: a pre-training run folder or an encoder weights file
(:mod:`vision_benchmarks.weights`) per pre-trained arm. Arms, per label fraction and seed:

- ``supervised``: the encoder of the runs' architecture, randomly initialised (seeded), trained
  on the labelled images only (``--scratch-epochs``; ``--no-scratch`` leaves it out);
- ``NAME``: the run's backbone fine-tuned (:func:`vision_benchmarks.evaluation.protocols.finetune`:
  backbone + linear layer, SGD nesterov, crop + flip). A SimCLRv2 backbone is its encoder
  plus the first layer of its 3-layer head: fine-tuning from the middle of the head;
- ``NAME-distilled`` for every run of ``--distill`` (default: those pre-trained with
  simclrv2): the fine-tuned network as teacher, a fresh copy of the pre-trained backbone as
  student, trained on all training images without their labels
  (:func:`vision_benchmarks.evaluation.protocols.distill`, ``--distill-epochs``).

Every arm of one (fraction, seed) sees the same labelled images: the class-balanced subset of
:func:`vision_benchmarks.evaluation.protocols.balanced_label_indices` (exactly ``round(f N / C)`` per
class), saved as the index file ``<out>/labels/labels<f>_seed<s>.json`` and read back from it.
Fine-tuning epochs default to the paper's: 60 at 1% of the labels or fewer, 30 above.

Writes into ``--out``: ``cells/<arm>_f<f>_s<s>.json`` (one per arm, fraction and seed: the
test top-1 and the settings), ``teachers/`` (the fine-tuned networks that distillation starts
from), ``logs/`` (per-epoch test top-1), ``results.json`` and ``results.md``: per arm and
fraction the mean over seeds with its 95% Student-t interval (:func:`core_ssl.stats.t_interval`),
the per-seed values, and whether the paper's ordering (supervised < SimCLR < SimCLRv2 <
SimCLRv2 distilled) holds at this scale, by the means and by paired 95% intervals of the
per-seed differences. Resumable cell by cell.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence

from core_ssl.cli import run_command
from core_ssl.config import config_to_dict, parse_config

from vision_benchmarks.evaluation.semisup import Experiment, SemisupConfig, check_arms
from vision_benchmarks.evaluation.semisup_report import summarize, write_report

PROG = "python -m vision_benchmarks.semisup"


def parse_command_line(argv: Sequence[str]) -> SemisupConfig:
    """The validated config: every flag against its declared bounds
    (:func:`core_ssl.config.parse_config`), then the arms (:func:`check_arms`), before any
    run is loaded or any file written."""
    cfg = parse_config(SemisupConfig, argv, description=__doc__.split("\n\n")[0], prog=PROG)
    check_arms(cfg)
    return cfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = parse_command_line(sys.argv[1:] if argv is None else argv)
    experiment = Experiment(cfg)
    records = []
    for seed in cfg.seeds:  # seed-major: every arm and fraction gets its first seed before a second
        for fraction in cfg.fractions:
            for arm in experiment.arms:
                record = experiment.run(arm, fraction, seed)
                print(json.dumps({k: record[k] for k in ("arm", "fraction", "seed", "top1")}), flush=True)
                records.append(record)
    settings = config_to_dict(cfg)
    settings["dataset"] = experiment.scratch_cfg.dataset
    result = summarize(records, experiment.arms, cfg.fractions, settings)
    write_report(result, cfg.out)
    return result


if __name__ == "__main__":
    run_command(main)
