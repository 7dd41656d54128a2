#!/usr/bin/env bash
# Does blur/sharpen + noise augmentation of the source close part of the EPFL -> VNC gap?
# FT (source only) with the FT baseline's budget plus --sharpness/--noise, then the
# AdaBN probe scores it on VNC z 13-19 with and without target batch-norm statistics.
# Compare with the FT baseline row of results/adabn_probe.json.
#
#   bash benchmarks/augmentation_probe.sh [SHARPNESS] [NOISE]     # default 1.0 0.03
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
S=${1:-1.0}
N=${2:-0.03}
run=benchmarks/work/augmentation_probe/ft_s${S}_n${N}
mkdir -p "$(dirname "$run")" benchmarks/results/augmentation_probe
if [ ! -f "$run/checkpoint.pt" ] || [ -f "$run/state.pt" ]; then
  t0=$SECONDS
  .venv/bin/emda adapt --source "$DATA/epfl_lucchi_pp/train/raw.tif" \
    --source-labels "$DATA/epfl_lucchi_pp/train/labels.tif" --method ft \
    --iterations 1500 --batch-size 8 --patch-size 128 --seed 0 --device cpu --quiet \
    --sharpness "$S" --noise "$N" --out "$run" --overwrite
  echo "ft sharpness $S noise $N adapt $((SECONDS - t0)) s" >> benchmarks/results/augmentation_probe/timings.txt
fi
.venv/bin/python benchmarks/adabn_probe.py "$run"
