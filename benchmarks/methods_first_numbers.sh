#!/usr/bin/env bash
# Issue 3's first numbers: every built-in DA method on the full EPFL -> Drosophila VNC
# data, one seed, the same budget as the FT baseline (1500 iterations, batch 8, 128^2,
# CPU). Target training data: VNC slices z 0-12 (raw only); evaluation: VNC z 13-19.
# Writes benchmarks/results/methods_first_numbers/<method>.json; finished runs are reused.
# --average-weights 0: these numbers predate DANN's own default of 0.5.
#
#   bash benchmarks/methods_first_numbers.sh [method ...]   # default: mmd coral dann ynet
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WORK=${WORK:-benchmarks/work/methods_first_numbers}
OUT=benchmarks/results/methods_first_numbers
EMDA=${EMDA:-.venv/bin/emda}
mkdir -p "$WORK" "$OUT"
for method in "${@:-mmd coral dann ynet}"; do
  for m in $method; do
    run="$WORK/$m"
    if [ ! -f "$run/checkpoint.pt" ] || [ -f "$run/state.pt" ]; then
      t0=$SECONDS
      $EMDA adapt --source "$DATA/epfl_lucchi_pp/train/raw.tif" \
        --source-labels "$DATA/epfl_lucchi_pp/train/labels.tif" \
        --target "$DATA/drosophila_vnc/raw.tif" --target-z 0:13 --method "$m" \
        --iterations 1500 --batch-size 8 --patch-size 128 --seed 0 --device cpu --quiet \
        --average-weights 0 \
        --out "$run" --overwrite
      echo "$m adapt $((SECONDS - t0)) s" >> "$OUT/timings.txt"
    fi
    $EMDA predict "$run" "$DATA/drosophila_vnc/raw.tif" --output "$WORK/${m}_vnc_prob.tif" \
      --device cpu --quiet --overwrite
    $EMDA evaluate "$WORK/${m}_vnc_prob.tif" --labels "$DATA/drosophila_vnc/labels.tif" \
      --z-range 13:20 --json "$OUT/$m.json" --overwrite
    cp "$run/config.toml" "$OUT/${m}_config.toml"
    cp "$run/training_curve.png" "$OUT/${m}_training_curve.png"
  done
done
