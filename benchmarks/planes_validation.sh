#!/usr/bin/env bash
# Chooses `emda predict --planes` on the source, never on a target test set (issue 4's
# rule): FT trained on EPFL train z 0-109 (the CPU profile's settings), then the held-out
# EPFL train slices z 110-164 predicted slice by slice (xy) and averaged over the three
# orthogonal planes (ortho), both scored. Writes benchmarks/results/planes_validation/.
#
#   bash benchmarks/planes_validation.sh     # measured times in results/planes_validation/timings.txt
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WORK=${WORK:-benchmarks/work/planes_validation}
OUT=benchmarks/results/planes_validation
EMDA=${EMDA:-.venv/bin/emda}
PY=${PY:-.venv/bin/python}
TRAIN=$DATA/epfl_lucchi_pp/train
mkdir -p "$WORK" "$OUT"
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name $((SECONDS - t0)) s" >> "$OUT/timings.txt"; }

if [ ! -f "$WORK/run/checkpoint.pt" ] || [ -f "$WORK/run/state.pt" ]; then
  : > "$OUT/timings.txt"
  timed adapt $EMDA adapt --source "$TRAIN/raw.tif" --source-labels "$TRAIN/labels.tif" \
    --source-z 0:110 --method ft --iterations 1500 --batch-size 8 --patch-size 128 \
    --base-channels 16 --seed 0 --device cpu --quiet --out "$WORK/run" --overwrite
fi
[ "${1:-}" = "--train-only" ] && exit 0
# the held-out slices as volumes of their own, so that no plane sees a training slice
$PY - "$TRAIN" "$WORK" <<'PYEOF'
import sys
from emda.io.volume import open_volume, write_volume
train, work = sys.argv[1:]
for name in ("raw", "labels"):
    vol = open_volume(f"{train}/{name}.tif")
    write_volume(f"{work}/heldout_{name}.tif", vol.read(slice(110, 165)), vol.voxel_size)
PYEOF
touch "$OUT/timings.txt" && sed -i '/^predict_/d' "$OUT/timings.txt"  # a rerun replaces them
for planes in xy ortho; do
  timed "predict_$planes" $EMDA predict "$WORK/run" "$WORK/heldout_raw.tif" --planes "$planes" \
    --output "$WORK/heldout_prob_$planes.tif" --device cpu --quiet --overwrite
  $EMDA evaluate "$WORK/heldout_prob_$planes.tif" --labels "$WORK/heldout_labels.tif" \
    --json "$OUT/heldout_$planes.json" --overwrite
done
cp "$WORK/run/config.toml" "$OUT/run_config.toml"
cat "$OUT/timings.txt" "$OUT"/heldout_*.json
