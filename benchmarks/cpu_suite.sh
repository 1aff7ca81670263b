#!/usr/bin/env bash
# Every CPU speed measurement of docs/benchmarks.md, side by side with the reference code, in the
# documented order, into one folder per machine (results/benchmarks/<OUT_NAME>/):
#   peak.json, layer_peak.jsonl, rl.jsonl (joint and official optimiser sequences: the like-for-like
#   ratio), cut.jsonl, vision_throughput.jsonl, log.txt (start / end times and load averages).
# Then `python benchmarks/tables.py results/benchmarks/*/ --write` renders one table set per machine.
#
#   CURL_TREE=../curl CUT_TREE=../cut LIGHTLY_PY=../venv-lightly/bin/python bash benchmarks/cpu_suite.sh
#
# About 30 minutes. Run it on a quiet machine (`uptime` below 0.5): with 2 threads on 2 shared cores
# every parallel op's barrier waits for a descheduled thread, and the times mean nothing. The
# script refuses to start above MAX_LOAD (default 1.0) unless FORCE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CURL_TREE:?set CURL_TREE to a MishaLaskin/curl checkout (docs/benchmarks.md)}"
: "${CUT_TREE:?set CUT_TREE to a taesungp/contrastive-unpaired-translation checkout}"
LIGHTLY_PY=${LIGHTLY_PY:-}
THREADS=${THREADS:-2}
load=$(cut -d' ' -f1 /proc/loadavg)
if [ "${FORCE:-0}" != 1 ] && awk "BEGIN {exit !($load > ${MAX_LOAD:-1.0})}"; then
  echo "error: load average $load is above ${MAX_LOAD:-1.0}: the measurements would mean nothing — wait for a quiet machine (or FORCE=1)" >&2
  exit 2
fi
name=${OUT_NAME:-$(python3 - <<'PY'
from benchmarks.reference import run_facts
facts = run_facts()
vendor = "intel" if "intel" in str(facts.get("cpu_model", "")).lower() else "amd" if "amd" in str(facts.get("cpu_model", "")).lower() else "cpu"
print(f"cpu-{vendor}-{str(facts.get('cpu_capability', 'unknown')).lower()}-{'bf16' if facts.get('native_bf16_cpu') else 'nobf16'}")
PY
)}
O=results/benchmarks/$name
mkdir -p "$O"
stamp() { echo "$(date -u +%FT%TZ) $1; load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$O/log.txt"; }
stamp "start ($O, $THREADS threads)"
python3 benchmarks/peak.py --threads "$THREADS" > "$O/peak.json"; stamp "peak done"
python3 benchmarks/layer_peak.py --threads "$THREADS" > "$O/layer_peak.jsonl"; stamp "layer peak done"
python3 benchmarks/rl.py --threads "$THREADS" --reference "$CURL_TREE" --peak "$O/peak.json" --batch-sizes 128 512 \
  --optimizers joint official > "$O/rl.jsonl" 2>> "$O/log.txt"; stamp "rl done"
python3 benchmarks/cut.py --threads "$THREADS" --reference "$CUT_TREE" --peak "$O/peak.json" > "$O/cut.jsonl" 2>> "$O/log.txt"
stamp "cut done"
if [ -n "$LIGHTLY_PY" ]; then
  "$LIGHTLY_PY" benchmarks/vision_throughput.py --threads "$THREADS" --reference lightly --peak "$O/peak.json" \
    > "$O/vision_throughput.jsonl" 2>> "$O/log.txt"
  stamp "vision done"
fi
python3 benchmarks/tables.py "$O" --write > /dev/null
echo "wrote $O (tables.md)"
