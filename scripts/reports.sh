#!/usr/bin/env bash
# Every results table and plot of docs/results.md, rebuilt from the small run files committed under
# results/ (configs, evaluation logs, summaries): nothing trains or evaluates, a few minutes on a laptop.
# Each report is written beside its runs (rl_report.md, arms.png, results.md, claims.md, ...).
#
# usage: scripts/reports.sh            (make reports)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== rl_curl: CURL vs pixel SAC vs state SAC on cartpole-swingup"
python -m rl_curl.report results/rl_compare/cartpole-swingup > /dev/null
echo "   results/rl_compare/cartpole-swingup/rl_report.md"

echo "== rl_curl: the flagship, CURL on cheetah-run"
python -m rl_curl.report results/rl_flagship > /dev/null
echo "   results/rl_flagship/rl_report.md, rl_curves.png"

echo "== cut_translation: CUT vs FastCUT vs GAN only, CIFAR-10 automobile -> truck"
python -m cut_translation.report results/cut_compare/cifar/*-s* > results/cut_compare/cifar/report.md
echo "   results/cut_compare/cifar/report.md, arms.png, samples.png"

echo "== cut_translation: the shipped cats -> dogs generator's run"
python -m cut_translation.report results/cut/catdog-64-ngf32 > results/cut/catdog-64-ngf32/report.md
echo "   results/cut/catdog-64-ngf32/report.md, metrics.png"

echo "== vision_benchmarks: the seeded CIFAR-10 table and the papers' claims"
vision=(--epochs 2 --seeds 0 1 2 --out results/vision_table_e2 --report-only)
[ -f results/vision_table_e2/transfer.json ] && vision+=(--transfer fashion-mnist catdog)
[ -f results/vision_table_e2/robustness.json ] && vision+=(--robustness supcon --corruption-images 2000)
python benchmarks/vision_table.py "${vision[@]}" > /dev/null
echo "   results/vision_table_e2/results.md, claims.md, results.png"

echo "== vision_benchmarks: SupCon vs cross-entropy under corruptions"
python benchmarks/vision_table.py --epochs 2 --seeds 0 1 2 --methods supcon supervised --out results/vision_robust_e2 \
    --robustness supcon --corruption-images 2000 --report-only > /dev/null
echo "   results/vision_robust_e2/robustness.md, robustness.png"

echo "== vision_benchmarks: semi-supervised, 1% and 10% of the labels (every cell read back)"
python -m vision_benchmarks.semisup --runs simclr=docs/weights/vision/simclr.safetensors \
    simclrv2=docs/weights/vision/simclrv2.safetensors --fractions 0.01 0.1 --seeds 0 1 2 \
    --distill-epochs 3 --out results/semisup_e2 > /dev/null
echo "   results/semisup_e2/results.md"

echo "== vision_benchmarks: SimCLR's ablations (Figures 5, 8, 9; every evaluated cell read back)"
for pair in ablate-augment:augmentations ablate-augment-seeds:augmentations-seeds ablate-head:head ablate-batch:batch ablate-batch-lars:batch-lars; do
    step=${pair%%:*} folder=results/ablate_e2/${pair#*:}
    if [ -d "$folder/cells" ]; then
        REPORT_ONLY=1 ABLATE_ROOT=results/ablate_e2 bash scripts/vision_evidence.sh "$step" > /dev/null
        echo "   $folder/results.md, claims.md"
    fi
done

echo "== GPU checks (scripts/gpu_check.sh): the test suite with CUDA and the RL runs beside it"
for folder in results/gpu/*/; do
    [ -f "$folder/facts.json" ] || continue
    python benchmarks/gpu_check_report.py "$folder" > "$folder/report.md"
    echo "   $folder""report.md"
done

echo "== at the papers' scale: CURL's Table 1, and the GPU runs of the vision and CUT jobs"
if [ -d results/rl_table1 ] && ls results/rl_table1/*/eval.csv > /dev/null 2>&1; then
    python -m rl_curl.report results/rl_table1 > /dev/null
    echo "   results/rl_table1/rl_report.md"
fi
if [ -d results/scale ]; then
    python scripts/scale_results.py report | sed 's/^/   /'
fi

echo "== benchmarks: one table set per machine (the JSON lines under results/benchmarks/<machine>/)"
python benchmarks/tables.py results/benchmarks/*/ --write > /dev/null
echo "   results/benchmarks/*/tables.md"
