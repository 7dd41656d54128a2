"""What `emda clean` does to every harness row whose probability maps are on disk.

For each row of `results/<profile>/runs/` (as trained and with target BN), the stored
target-test probability map is thresholded at 0.5 and cleaned slice by slice with the
sizes `emda clean --sizes-from` reads from the row's *source* training labels (1st
percentile and median object area; fixed before any cleaned mask was scored, see
README.md); IoU, precision and recall before and after. The source check comes first:
the same cleaning on every stored source held-out map of `source_holdout.py` (VNC
z 13-19 for VNC-source models, the EPFL test volume for EPFL-source models).

    python benchmarks/cleaning_table.py [--profile cpu] [--source-only]

Writes `results/<profile>/cleaning.json`; reads maps, writes no map (a few s a volume).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from paper_table import _prediction, load_results, row_label, row_setting  # noqa: E402
from source_holdout import HELD_OUT  # noqa: E402

from emda.evaluation.evaluate import binarize, parse_z_range, prediction_kind  # noqa: E402
from emda.evaluation.metrics import Confusion  # noqa: E402
from emda.io.volume import open_volume, read_labels  # noqa: E402
from emda.postprocessing.cleaning import CleaningSizes, clean_slice, sizes_from_labels  # noqa: E402

# the first version of source_holdout.py named its VNC maps vnc_prob.tif
LEGACY_NAMES = {"vnc_z13_19": "vnc_prob.tif"}


@cache
def source_sizes(labels: str, z: str | None) -> CleaningSizes:
    volume = read_labels(labels)
    return sizes_from_labels(volume, parse_z_range(z, volume.shape[0]))


@cache
def truth(labels: str) -> np.ndarray:
    return read_labels(labels).read() > 0


def scores(confusion: Confusion) -> dict:
    s = confusion.scores()
    return {k: round(s[k], 5) for k in ("iou", "precision", "recall")}


def before_after(prob: Path, labels: str, z: str | None, sizes: CleaningSizes) -> dict:
    volume = open_volume(prob)
    kind = prediction_kind(volume)
    gt = truth(labels)
    start, stop = parse_z_range(z, gt.shape[0])
    before, after = Confusion(), Confusion()
    for i in range(start, stop):
        mask = binarize(volume.read(i), kind, 0.5, str(prob))
        cleaned, _ = clean_slice(mask, sizes)
        before += Confusion.of(mask, gt[i])
        after += Confusion.of(cleaned, gt[i])
    return {"before": scores(before), "after": scores(after),
            "change": round(100 * (after.iou - before.iou), 2)}  # fmt: skip


def source_check(profile: str) -> list[dict]:
    out = []
    for result in load_results(profile):
        config, key = result["config"], result["key"]
        source = config["direction"]["source"]
        if source["raw"] not in HELD_OUT:
            continue
        _, labels, z, name = HELD_OUT[source["raw"]]
        work = HERE / "work" / profile / key
        names = (f"{name}_prob.tif", LEGACY_NAMES.get(name))
        found = [work / n for n in names if n and (work / n).exists()]
        if not found:
            continue
        prob = found[0]
        sizes = source_sizes(source["labels"], source.get("z"))
        row = {"key": key, "row": row_label(config), "seed": config["seed"],
               "direction": config["direction"]["name"], "held_out": name}  # fmt: skip
        out.append({**row, "sizes": vars(sizes), **before_after(prob, labels, z, sizes)})
        change = out[-1]["change"]
        print(f"source {row['direction']} {row['row']} seed {row['seed']}: {change:+.2f}")
    return out


def target_rows(profile: str) -> list[dict]:
    out = []
    for result in load_results(profile):
        config = result["config"]
        source, test = config["direction"]["source"], config["direction"]["target_test"]
        sizes = source_sizes(source["labels"], source.get("z"))
        row = {"key": result["key"], "direction": config["direction"]["name"],
               "setting": row_setting(config), "row": row_label(config),
               "seed": config["seed"], "sizes": vars(sizes)}  # fmt: skip
        for field, name in (("scores_as_trained", "as_trained"), ("scores", "target_bn")):
            if field not in result:
                continue
            prob = _prediction(result, profile, field)
            if not prob.exists():
                row[name] = "map not on disk"
                continue
            row[name] = before_after(prob, test["labels"], test.get("z"), sizes)
        out.append(row)
        shown = {k: row[k]["change"] for k in ("as_trained", "target_bn")
                 if isinstance(row.get(k), dict)}  # fmt: skip
        print(f"{row['direction']} {row['setting']} {row['row']} seed {row['seed']}: {shown}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument(
        "--source-only",
        action="store_true",
        help="the source check alone (it decides before any target score)",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    report = {"source_held_out": source_check(args.profile)}
    if args.source_only:
        return
    report["target_test"] = target_rows(args.profile)
    report["seconds"] = round(time.perf_counter() - start, 1)
    path = HERE / "results" / args.profile / "cleaning.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
