#!/usr/bin/env bash
# The CUT paper's comparison at CPU scale: CUT, FastCUT and CUT without PatchNCE (lambda_NCE = 0,
# the GAN loss alone: the paper's ablation), several seeds each, on two CIFAR-10 classes at 32 px
# (automobile -> truck, the `cifar` preset), one budget for all. Runs one training at a time, in
# the order given, each on one thread; a finished run is skipped, an interrupted one resumed and
# one that another process is training (its folder locked) left to it, so the same command
# continues the sweep after any interruption and two copies can share it, one per core.
# Tables (per run, last evaluations, and over seeds with 95% t intervals) and plots:
#     python -m cut_translation.report runs/cut_compare/cifar/*-s*
#
# usage: scripts/cut_compare.sh [ARM:SEED ...]   (default: the whole sweep, in the order below)
# ARM is cut | fastcut | gan-only.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/sweep_lib.sh
ROOT=${CUT_COMPARE_ROOT:-runs/cut_compare/cifar}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread per training, NumPy / SciPy (the evaluation) included
# The budget (see docs/results.md): the cifar preset (6 residual blocks, batch 1, 500 held-out
# test images per domain for FID / KID / the domain classifier / content) with a generator of
# width 32 instead of 64, 3 epochs at constant lr then 3 of linear decay, 1,000 steps each
# (6,000 steps), an evaluation after every epoch. The arms of one seed hold out the same images
# and share their real images' Inception features (eval_features-s<seed>.pt in the root).
BUDGET=(--preset cifar --ngf 32 --epochs 3 --epochs-decay 3 --steps-per-epoch 1000 --eval-every 1 --threads 1)
SWEEP=(cut:1 fastcut:1 gan-only:1 cut:2 fastcut:2 gan-only:2 cut:3 fastcut:3 gan-only:3)
[ $# -gt 0 ] && SWEEP=("$@")

for item in "${SWEEP[@]}"; do
    arm=${item%%:*}; seed=${item##*:}
    case "$arm" in
        cut) flags=(--mode cut) ;;
        fastcut) flags=(--mode fastcut) ;;
        gan-only) flags=(--mode cut --lambda-nce 0) ;;
        *) echo "error: unknown arm '$arm' — use cut, fastcut or gan-only" >&2; exit 2 ;;
    esac
    # summary.json is written when a training finishes
    run_cell "$ROOT/$arm-s$seed" summary.json python -m cut_translation.train "${BUDGET[@]}" "${flags[@]}" --seed "$seed" \
        --eval-cache "$ROOT/eval_features-s$seed.pt"
done
exit "${failed:-0}"
