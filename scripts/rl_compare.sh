#!/usr/bin/env bash
# The CURL comparison on cartpole-swingup: CURL, pixel SAC, state SAC and CURL with the official
# optimiser sequence, several seeds each, at one CPU budget. Runs one training at a time, in the
# order given, each on one thread; a finished run is skipped, an interrupted one resumed and one
# that another process is training (its folder locked) left to it, so the same command
# continues the sweep after any interruption and two copies can share the sweep, one per core.
# Tables and plot:
#     python -m rl_curl.report runs/rl_compare/cartpole-swingup
#
# usage: scripts/rl_compare.sh [ARM:SEED ...]   (default: the whole sweep, in the order below)
# ARM is curl | pixel-sac | state-sac | curl-official.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/sweep_lib.sh
ROOT=${RL_COMPARE_ROOT:-runs/rl_compare/cartpole-swingup}
# The budget (see docs/results.md): cpu preset, batch 32 (the official train.py default),
# 50k environment steps, an evaluation (10 episodes) every 5k.
BUDGET=(--env cartpole-swingup --preset cpu --batch-size 32 --total-env-steps 50000
        --eval-every 5000 --checkpoint-every 5000 --threads 1 --no-progress-bar)
SWEEP=(curl:1 pixel-sac:1 state-sac:1 state-sac:2 state-sac:3 curl:2 pixel-sac:2 curl:3 pixel-sac:3
       curl-official:1 curl-official:2)
[ $# -gt 0 ] && SWEEP=("$@")

for item in "${SWEEP[@]}"; do
    arm=${item%%:*}; seed=${item##*:}
    case "$arm" in
        curl|pixel-sac|state-sac) flags=(--agent "$arm") ;;
        curl-official) flags=(--agent curl --optimizers official) ;;
        *) echo "error: unknown arm '$arm' — use curl, pixel-sac, state-sac or curl-official" >&2; exit 2 ;;
    esac
    # actor.safetensors is written when a training finishes
    run_cell "$ROOT/$arm-s$seed" actor.safetensors python -m rl_curl.train "${BUDGET[@]}" "${flags[@]}" --seed "$seed"
done
exit "${failed:-0}"
