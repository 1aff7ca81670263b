# Shared by the sweep scripts (scripts/rl_compare.sh, scripts/cut_compare.sh); source it.
#
# run_cell DIR DONE_FILE COMMAND...
#   Runs one training of a sweep in run folder DIR: skipped when DIR/DONE_FILE exists (the run
#   finished), left alone when another process holds DIR/.lock (a second copy of the sweep on the
#   other core is training it), resumed (--resume appended) when DIR/checkpoint.pt exists.
#   COMMAND gets --run-dir DIR appended. A failure is printed and sets failed=1; the sweep goes on.
run_cell() {
    local dir=$1 done_file=$2
    shift 2
    if [ -f "$dir/$done_file" ]; then echo "done: $dir"; return 0; fi
    if [ -f "$dir/.lock" ] && ! flock -n "$dir/.lock" true; then echo "busy: $dir"; return 0; fi
    local resume=()
    [ -f "$dir/checkpoint.pt" ] && resume=(--resume)
    echo "$(date -u +%FT%TZ) start: $dir ${resume[*]}"
    "$@" --run-dir "$dir" "${resume[@]}" || { local status=$?; echo "$(date -u +%FT%TZ) failed ($status): $dir" >&2; failed=1; }
}
