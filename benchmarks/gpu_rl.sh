#!/usr/bin/env bash
# CURL on cheetah-run for 100k environment steps on one GPU, then a 10-episode evaluation.
#
# Target: the whole run (training + the evaluations at steps 0 and 100k) within 8 minutes on
# one H200; the paper reports 299 +- 48 at 100k steps. Settings: the paper preset (batch 512,
# lr 2e-4, hidden 1024, action repeat 4), replay and crops on the GPU, bf16 convs,
# channels-last. Prints JSON lines: what was measured, read back from the run folder.
#
#   bash benchmarks/gpu_rl.sh [run_dir]        (default runs/rl_curl/gpu-cheetah-run-100k)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
RUN_DIR=${1:-runs/rl_curl/gpu-cheetah-run-100k}
SEED=${SEED:-1}

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo '{"bench": "rl_gpu", "error": "CUDA is not available: this script needs a GPU"}'
    exit 1
fi
if [ -e "$RUN_DIR/checkpoint.pt" ]; then
    echo "{\"bench\": \"rl_gpu\", \"error\": \"$RUN_DIR already holds a run; remove it or pass another folder\"}"
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

start=$(date +%s.%N)
"$PYTHON" -m rl_curl.train --env cheetah-run --device cuda --preset paper --seed "$SEED" \
    --total-env-steps 100000 --eval-every 100000 --checkpoint-every 100000 --log-every 5000 \
    --run-dir "$RUN_DIR"
end=$(date +%s.%N)

"$PYTHON" - "$RUN_DIR" "$start" "$end" <<'PY'
import csv, json, sys
run_dir, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
evals = list(csv.DictReader(open(f"{run_dir}/eval.csv")))
train = list(csv.DictReader(open(f"{run_dir}/train.csv")))
last = evals[-1]
fps = [float(r["fps"]) for r in train]
print(json.dumps({
    "bench": "rl_gpu", "task": "cheetah-run", "env_steps": int(last["step"]),
    "eval_return_mean": round(float(last["return_mean"]), 1), "eval_return_std": round(float(last["return_std"]), 1),
    "eval_return_at_0": round(float(evals[0]["return_mean"]), 1),
    "wall_seconds_total": round(end - start, 1), "within_8_minutes": end - start <= 480,
    "train_env_steps_per_s_median": round(sorted(fps)[len(fps) // 2], 1) if fps else None,
    "run_dir": run_dir,
}))
PY
