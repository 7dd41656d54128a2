"""Reduced-precision prediction against float32 on the paper table's own models.

    python benchmarks/precision_parity.py --profile cpu --keys KEY[,KEY...] [--precision bfloat16]

For each recorded row (``benchmarks/results/<profile>/runs/<KEY>.json``), the model that
row scored predicts the row's target test volume again with ``emda predict --precision``
(same tiles and planes as the row), and ``emda evaluate`` scores it on the same slices.
The float32 scores are the row's recorded ones: the same model, input and settings, so
any difference is the precision's. Writes
``benchmarks/results/<profile>/precision_parity.json`` (rows merged by key and precision).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.config import PROFILES, Split  # noqa: E402
from harness.labels import row_label  # noqa: E402
from harness.running import predict_and_score, prediction_path  # noqa: E402

METRICS = ("iou", "precision", "recall")


def parity_row(profile: str, key: str, precision: str) -> dict:
    result = json.loads((HERE / "results" / profile / "runs" / f"{key}.json").read_text())
    config = result["config"]
    if config.get("semi_fraction"):
        sys.exit(f"{key}: semi-supervised rows are not covered (their model is a finetune)")
    recorded = prediction_path(result, profile)  # MODEL[_PLANES][_tta]_prob.tif
    name = recorded.name.removesuffix("_prob.tif").removesuffix("_tta" if config.get("tta") else "")
    planes = config.get("planes", "xy")
    model = recorded.parent / (name.removesuffix(f"_{planes}") if planes != "xy" else name)
    test = Split(**config["direction"]["target_test"])
    log = recorded.parent / "log.txt"
    scores, _, seconds = predict_and_score(
        model, test, PROFILES[profile]["tile_size"], log,
        planes, bool(config.get("tta")), precision, tagged=True,
    )  # fmt: skip
    full = result["scores"]
    return {
        "key": key,
        "row": f"{config['direction']['name']} {row_label(config)} seed {config['seed']}",
        "precision": precision,
        "model": str(model.relative_to(HERE.parent)),
        "float32": {m: full[m] for m in METRICS},
        precision: {m: scores[m] for m in METRICS},
        "iou_difference": scores["iou"] - full["iou"],
        "predict_seconds": {
            "float32": result["seconds"].get(f"predict_{model.name}"),
            precision: seconds,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--keys", required=True)
    parser.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float16"))
    args = parser.parse_args()
    out = HERE / "results" / args.profile / "precision_parity.json"
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    for key in args.keys.split(","):
        row = parity_row(args.profile, key, args.precision)
        rows = [r for r in rows if (r["key"], r["precision"]) != (key, args.precision)] + [row]
        print(f"{row['row']}: IoU float32 {row['float32']['iou']:.4f}, {args.precision} "
              f"{row[args.precision]['iou']:.4f}", flush=True)  # fmt: skip
        diffs = [r["iou_difference"] for r in rows if r["precision"] == args.precision]
        summary = {"rows": len(diffs), "mean_iou_difference": sum(diffs) / len(diffs),
                   "max_abs_iou_difference": max(abs(d) for d in diffs)}  # fmt: skip
        out.write_text(json.dumps({"summary": {args.precision: summary}, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
