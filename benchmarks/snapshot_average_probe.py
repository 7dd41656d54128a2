"""Would averaging the weights of late checkpoints steady DANN and FT? A post-hoc
exploration on the checkpoint-selection probe's stored snapshots (it trains nothing and
sets nothing; benchmarks/README.md, stop 31).

The probe (checkpoint_selection_probe.py) found scores swinging between checkpoints 250
iterations apart. Stochastic weight averaging (Izmailov et al. 2018) is the label-free
answer: this averages the weights (and batch-norm buffers) of the snapshots from the
second half of training (iterations 750, 1000, 1250, 1500), writes the result as a
checkpoint, and scores it on the target test set as the probe scores a checkpoint: as
trained and with target batch-norm statistics. For comparison it also averages the same
snapshots' stored probability maps (a snapshot ensemble: four predictions, not one).

The seeds it reads were scored checkpoint by checkpoint before this was written, so
what it measures is a lead to test on fresh seeds, not a result.

    python benchmarks/snapshot_average_probe.py --method dann --seed 0
    # -> results/cpu/snapshot_average/dann_seed0.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import tifffile
from checkpoint_selection_probe import PROFILE, score, test_loss
from paper_table import HERE, REPO, _adapted_dir, directions, emda, row_config, row_options

from emda.model.checkpoint import atomic_torch_save, load_raw
from emda.training.averaging import WeightAverage

LATE = (750, 1000, 1250, 1500)  # the second half of the 1500-iteration budget


def average_checkpoints(paths: list[Path], out: Path) -> None:
    """The checkpoints' weights averaged by the same :class:`WeightAverage` that
    ``emda adapt --average-weights`` uses; settings from the last checkpoint."""
    raws = [load_raw(p) for p in paths]
    average = WeightAverage()
    for raw in raws:
        average.update(raw["state_dict"])
    merged = {**raws[-1], "state_dict": average.weights(raws[-1]["state_dict"])}
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(paths[-1].parent / "config.toml", out / "config.toml")
    atomic_torch_save(merged, out / "checkpoint.pt")


def average_maps(maps: list[Path], out: Path) -> None:
    mean = np.mean([tifffile.imread(m).astype(np.float32) for m in maps], axis=0)
    tifffile.imwrite(out, np.round(mean).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="dann")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    direction = directions("shared")["epfl2vnc"]
    options = row_options(args.method, [])
    config = row_config(PROFILE, direction, args.method, args.seed, None, "xy", options)
    snapshots = _adapted_dir(config) / "snapshots"
    late = [snapshots / f"it{it:05d}" for it in LATE]
    for snapshot in late:
        if not (snapshot / "checkpoint.pt").is_file():
            raise SystemExit(f"error: {snapshot}: no snapshot; run checkpoint_selection_probe.py "
                             f"--method {args.method} --seed {args.seed} first")  # fmt: skip
    log = snapshots / "log.txt"
    averaged = snapshots / "average_0750-1500"
    average_checkpoints([s / "checkpoint.pt" for s in late], averaged)
    recalibrated = snapshots / "average_0750-1500_target_bn"
    tr = direction.target_train
    emda("recalibrate", str(averaged), "--target", tr.raw,
         *(["--target-z", tr.z] if tr.z else []), "--out", str(recalibrated), "--overwrite",
         log=log)  # fmt: skip
    result = {"weights_averaged": {"as_trained": score(averaged, direction, log),
                                   "target_bn": score(recalibrated, direction, log)}}  # fmt: skip
    te = direction.target_test
    start, stop = (int(v) for v in te.z.split(":"))
    ensemble = {}
    for field, suffix in (("as_trained", ""), ("target_bn", "_target_bn")):
        prob = snapshots / f"ensemble_0750-1500{suffix}_prob.tif"
        average_maps([snapshots / f"{s.name}{suffix}_prob.tif" for s in late], prob)
        scores = snapshots / f"ensemble_0750-1500{suffix}_scores.json"
        emda("evaluate", str(prob), "--labels", te.labels, "--json", str(scores),
             "--overwrite", "--z-range", te.z, log=log)  # fmt: skip
        (s,) = json.loads(scores.read_text())
        ensemble[field] = {k: s[k] for k in ("iou", "precision", "recall")} | {
            "test_bce": test_loss(prob, REPO / te.labels, slice(start, stop))
        }
    result["predictions_averaged"] = ensemble
    probe = HERE / "results" / PROFILE / "checkpoint_selection"
    rows = json.loads((probe / f"{args.method}_seed{args.seed}.json").read_text())["checkpoints"]
    result["snapshots"] = {str(it): rows[str(it)] for it in LATE}
    out = HERE / "results" / PROFILE / "snapshot_average" / f"{args.method}_seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "what": __doc__.split("\n\n")[0].strip(),
        "rerun": f"python benchmarks/{Path(__file__).name} --method {args.method} "
        f"--seed {args.seed}",
        "method": args.method, "seed": args.seed, "snapshots_averaged": list(LATE),
        **result,
    }, indent=1) + "\n")  # fmt: skip
    print(json.dumps(result["weights_averaged"]), json.dumps(ensemble), f"wrote {out}", sep="\n")


if __name__ == "__main__":
    main()
