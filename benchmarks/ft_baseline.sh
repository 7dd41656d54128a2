#!/usr/bin/env bash
# Issue 2's acceptance run: FT on the full EPFL train volume (1500 iterations, batch 8,
# 128^2 patches, CPU), then predict + evaluate on the EPFL test volume and the whole
# Drosophila VNC stack. Writes benchmarks/results/ft_baseline/{epfl_test,vnc}.json and
# timings.txt. Reuses a finished run in $WORK (default benchmarks/work/ft_baseline).
#
#   bash benchmarks/ft_baseline.sh            # about 20-25 min of CPU on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WORK=${WORK:-benchmarks/work/ft_baseline}
OUT=benchmarks/results/ft_baseline
EMDA=${EMDA:-.venv/bin/emda}
mkdir -p "$WORK" "$OUT"
: > "$OUT/timings.txt"
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name $((SECONDS - t0)) s" >> "$OUT/timings.txt"; }

if [ ! -f "$WORK/run/checkpoint.pt" ] || [ -f "$WORK/run/state.pt" ]; then
  timed adapt $EMDA adapt --source "$DATA/epfl_lucchi_pp/train/raw.tif" \
    --source-labels "$DATA/epfl_lucchi_pp/train/labels.tif" --method ft \
    --iterations 1500 --batch-size 8 --patch-size 128 --seed 0 --device cpu --quiet \
    --out "$WORK/run" --overwrite
fi
timed predict_epfl_test $EMDA predict "$WORK/run" "$DATA/epfl_lucchi_pp/test/raw.tif" \
  --output "$WORK/epfl_test_prob.tif" --device cpu --quiet --overwrite
timed predict_vnc $EMDA predict "$WORK/run" "$DATA/drosophila_vnc/raw.tif" \
  --output "$WORK/vnc_prob.tif" --device cpu --quiet --overwrite
$EMDA evaluate "$WORK/epfl_test_prob.tif" --labels "$DATA/epfl_lucchi_pp/test/labels.tif" \
  --json "$OUT/epfl_test.json" --overwrite
$EMDA evaluate "$WORK/vnc_prob.tif" --labels "$DATA/drosophila_vnc/labels.tif" \
  --json "$OUT/vnc.json" --overwrite
$EMDA evaluate "$WORK/vnc_prob.tif" --labels "$DATA/drosophila_vnc/labels.tif" \
  --z-range 13:20 --json "$OUT/vnc_z13-20.json" --overwrite
cp "$WORK/run/config.toml" "$OUT/run_config.toml"
cp "$WORK/run/training_curve.png" "$OUT/training_curve.png"
cat "$OUT/timings.txt"
