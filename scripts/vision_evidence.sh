#!/usr/bin/env bash
# Every vision experiment behind docs/results.md, at the budgets stated there, one step at a time.
# Each step is resumable (finished cells are read back, interrupted trainings resume from their
# checkpoints), so the same command continues after any interruption; steps that share no cells
# can run at once, one per core (e.g. `table` on one core and `ablate-head` on the other).
#
# usage: scripts/vision_evidence.sh STEP [STEP ...]
#   table            the CIFAR-10 table (every method, 2 epochs, seeds 0 1 2), then the transfer table
#                    (Fashion-MNIST, cat/dog photos), SupCon vs cross-entropy under corruptions, and the
#                    median-seed encoders exported to docs/weights/vision
#   semisup          SimCLRv2's semi-supervised comparison (1% and 10% of the labels, seeds 0 1 2) on the
#                    shipped SimCLR and SimCLRv2 encoders (run `table` first)
#   ablate-augment   SimCLR Figure 5: the 7 x 7 grid of transformation pairs, seed 0
#   ablate-augment-seeds   crop / colour / blur pairs with seeds 0 1 2 (the grid's main contrasts;
#                    the grid's finished seed-0 cells are reused)
#   ablate-head      SimCLR Figure 8: no head / linear / MLP x output sizes, seeds 0 1 2
#   ablate-batch     SimCLR Figure 9: batch size x training length, seeds 0 1 2
#   ablate-batch-lars  the same grid with the paper's optimiser: LARS, linear lr scaling, and each
#                    cell compared with ablate-batch's (run that first)
# The ablations pre-train on a fixed 10,000-image subset of CIFAR-10 and probe on 10,000 labelled
# training images and 2,000 test images (cell by cell, the same subsets). The augmentation and head
# cells train 4 epochs at batch 128 (312 steps, about 3.5 minutes of one core each).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread per process: two steps fill two cores
[ $# -gt 0 ] || { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 2; }

# REPORT_ONLY=1: the ablation steps rebuild their reports from the evaluated cells under ABLATE_ROOT
# (default runs/ablate_e2; make reports uses the committed results/ablate_e2) and train nothing.
ROOT=${ABLATE_ROOT:-runs/ablate_e2}
SUBSET=(--eval-train-images 10000 --eval-test-images 2000)
[ "${REPORT_ONLY:-0}" = 1 ] && SUBSET+=(--report-only)
CELL=(--train-images 10000 --batch-size 128)
for step in "$@"; do
    case "$step" in
        table)
            python benchmarks/vision_table.py --epochs 2 --seeds 0 1 2 --out runs/vision_table_e2 \
                --transfer fashion-mnist catdog --robustness supcon --corruption-images 2000 \
                --ship docs/weights/vision ;;
        semisup)
            python -m vision_benchmarks.semisup --runs simclr=docs/weights/vision/simclr.safetensors \
                simclrv2=docs/weights/vision/simclrv2.safetensors --fractions 0.01 0.1 --seeds 0 1 2 \
                --distill-epochs 3 --out runs/semisup_e2 ;;
        ablate-augment)
            python -m vision_benchmarks.ablate augmentations --epochs 4 --seeds 0 "${SUBSET[@]}" \
                --out "$ROOT/augmentations" -- "${CELL[@]}" ;;
        ablate-augment-seeds)
            # the grid's seed-0 cells have these settings: reuse the ones it finished
            for cell in "$ROOT"/augmentations/cells/{crop,color,blur}{,+crop,+color,+blur}-s0; do
                target="$ROOT/augmentations-seeds/cells/$(basename "$cell")"
                if [ "${REPORT_ONLY:-0}" != 1 ] && [ -f "$cell/cell.json" ] && [ ! -e "$target" ]; then
                    mkdir -p "$(dirname "$target")" && cp -r "$cell" "$target"
                fi
            done
            python -m vision_benchmarks.ablate augmentations --epochs 4 --seeds 0 1 2 --transforms crop color blur \
                "${SUBSET[@]}" --out "$ROOT/augmentations-seeds" -- "${CELL[@]}" ;;
        ablate-head)
            python -m vision_benchmarks.ablate head --epochs 4 --seeds 0 1 2 --dims 32 128 512 "${SUBSET[@]}" \
                --out "$ROOT/head" -- "${CELL[@]}" ;;
        ablate-batch)
            python -m vision_benchmarks.ablate batch --batch-sizes 64 256 1024 --epoch-grid 2 4 8 --seeds 0 1 2 \
                "${SUBSET[@]}" --out "$ROOT/batch" -- --train-images 10000 ;;
        ablate-batch-lars)
            python -m vision_benchmarks.ablate batch --batch-sizes 64 256 1024 --epoch-grid 2 4 8 --seeds 0 1 2 \
                --lr-scaling linear "${SUBSET[@]}" --out "$ROOT/batch-lars" -- --train-images 10000 --optimizer lars
            python -m vision_benchmarks.studies.ablation_compare "$ROOT/batch" "$ROOT/batch-lars" \
                --labels "AdamW, sqrt scaling" "LARS, linear scaling" --out "$ROOT/batch-lars/compare.md" > /dev/null ;;
        *)
            echo "error: unknown step '$step'; steps: table semisup ablate-augment ablate-augment-seeds" \
                 "ablate-head ablate-batch ablate-batch-lars" >&2
            exit 2 ;;
    esac
done
