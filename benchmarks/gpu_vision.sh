#!/usr/bin/env bash
# SimCLR, paper preset (ResNet-18 CIFAR stem, batch 512, SGD, t = 0.5), on CIFAR-10 for as many
# epochs as fit in MINUTES (default 6) of training on one GPU: augmentation on the GPU, bf16
# autocast, channels-last. The online kNN (k = 200, t = 0.1, the whole training set as the bank,
# the whole test set) runs every KNN_EVERY epochs and at the end; it is not counted in the budget.
# Prints images/s and the final kNN top-1 (to set beside lightly's 0.847 after 200 epochs at
# batch 128 on an RTX A6000) as one JSON line.
#
#   bash benchmarks/gpu_vision.sh                 # about 8 minutes on one H200 (6 of training)
#   MINUTES=1 KNN_EVERY=0 bash benchmarks/gpu_vision.sh   # a short check
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${MINUTES:-6}"
KNN_EVERY="${KNN_EVERY:-5}"
OUT="${OUT:-runs/gpu_simclr_paper}"
PYTHON="${PYTHON:-python3}"

resume=()
if [[ -f "$OUT/checkpoint.pt" || -f "$OUT/last.pt" ]]; then resume=(--resume); fi
"$PYTHON" -m vision_benchmarks.pretrain --method simclr --preset paper --dataset cifar10 \
    --device cuda --minutes "$MINUTES" --knn-every "$KNN_EVERY" --log-every 20 --out "$OUT" "${resume[@]}"
"$PYTHON" - "$OUT" <<'PY'
import json, sys
summary = json.load(open(f"{sys.argv[1]}/summary.json"))
print(json.dumps({"benchmark": "gpu_simclr_paper_preset", "epochs": summary["epochs"],
                  "train_minutes": summary["train_minutes"], "images_per_second": summary["images_per_second"],
                  "knn_top1": summary["knn_top1"]}))
PY
