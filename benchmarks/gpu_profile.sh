#!/usr/bin/env bash
# The paper table's GPU profile for one direction: every method side by side on one GPU
# (one harness process each, a few CPU threads each for patch sampling), then the
# FT and Y-Net seeds 1-2 if at most half of DEADLINE is gone, then the report.
#
#   DEADLINE=480 bash benchmarks/gpu_profile.sh [DIRECTION]
#   DEADLINE=480 bash benchmarks/gpu_profile.sh DIRECTION recipe   # the recipe, seeds 0-2
#
# DEADLINE (seconds, default none) stops what is still running at that point; finished
# rows are kept (benchmarks/results/gpu/runs/<key>.json) and a rerun skips them.
set -u
cd "$(dirname "$0")/.."
direction=${1:-epfl2vnc}
deadline=${DEADLINE:-0}
py=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
logs=benchmarks/results/gpu/logs
mkdir -p "$logs"
start=$SECONDS

left() {  # seconds until the deadline (a day when there is none)
    local n=$((deadline - (SECONDS - start)))
    if [ "$deadline" -le 0 ]; then echo 86400; elif [ "$n" -gt 1 ]; then echo "$n"; else echo 1; fi
}

row() {  # method seeds [semi]
    timeout "$(left)" "$py" benchmarks/paper_table.py run --no-report --profile gpu \
        --directions "$direction" --methods "$1" --seeds "$2" ${3:+--semi "$3"} \
        >>"$logs/$direction-$1.txt" 2>&1
}

if [ "${2:-}" = recipe ]; then  # `emda adapt` without --method, scored as predict's default
    for s in 0 1 2; do
        timeout "$(left)" "$py" benchmarks/paper_table.py run --no-report --profile gpu \
            --directions "$direction" --methods recipe --seeds "$s" --planes auto \
            >>"$logs/$direction-recipe.txt" 2>&1 &
    done
    wait
    "$py" benchmarks/paper_table.py report --profile gpu >"$logs/report.txt" 2>&1
    cat benchmarks/results/gpu/table.md 2>/dev/null
    exit 0
fi

for m in ft mmd coral dann ynet meanteacher; do row "$m" 0 0.15 & done
wait
echo "seed 0 done after $((SECONDS - start)) s"
if [ "$(left)" -gt $((deadline / 2)) ] || [ "$deadline" -eq 0 ]; then
    for m in ft ynet; do for s in 1 2; do row "$m" "$s" & done; done
    wait
    echo "seeds 1-2 done after $((SECONDS - start)) s"
fi
"$py" benchmarks/paper_table.py report --profile gpu >"$logs/report.txt" 2>&1
cat benchmarks/results/gpu/table.md 2>/dev/null
echo "total $((SECONDS - start)) s"
