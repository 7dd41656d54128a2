"""The recipe on targets made harder, against FT with target batch norm, stage by stage.

    python benchmarks/stress.py --target vnc_2x_dark_noisy [--run RUN]

Until more labelled domains exist, the VNC volume is perturbed into new targets scored
against its own labels (``perturbations.py`` defines them):

- ``vnc``: the volume as it is (``--run``: a finished recipe run on it, e.g. the
  paper-table row's ``benchmarks/work/cpu/<key>/run``);
- ``vnc_NAME``: the VNC with perturbation NAME, e.g. ``vnc_2x_dark_noisy``: binned 2 x 2
  in-plane (9.2 nm pixels), gamma 1.5 (darker mid-tones), contrast 0.7 around the mean,
  Gaussian noise of 12 grey levels (seeded).

Source: the EPFL training volume. FT is the EPFL FT model of resampling.py, recalibrated
on the target's slices 0-12 (what ``emda adapt --method ft --target`` ends with); the
recipe is ``emda adapt`` with no method (trained here unless ``--run``). Every stage's
model, the one the recipe kept and FT are scored on slices 13-19 (``--planes xy``).
Appends to benchmarks/results/stress.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from perturbations import PERTURBATIONS, target  # noqa: E402
from resampling import DATA, WORK, emda, score  # noqa: E402

TARGETS = ("vnc", *(f"vnc_{name}" for name in PERTURBATIONS if name != "none"))


def perturbed(name: str) -> tuple[str, str]:
    if name == "vnc":
        vnc = DATA / "drosophila_vnc"
        return str(vnc / "raw.tif"), str(vnc / "labels.tif")
    where = target("epfl2vnc", name.removeprefix("vnc_"))
    return where["test"], where["labels"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--run", help="a finished recipe run on this target")
    parser.add_argument("--ft", default=str(WORK / "epfl_ft"), help="the EPFL FT run")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    raw, labels = perturbed(args.target)
    epfl = DATA / "epfl_lucchi_pp"
    ft_bn = str(WORK / f"stress_{args.target}_ft_bn")
    emda("recalibrate", args.ft, "--target", raw, "--target-z", "0:13", "--out", ft_bn,
         "--overwrite")  # fmt: skip
    scores = {"ft_target_bn": score(ft_bn, raw, labels, f"stress_{args.target}_ft", "13:20")}
    run = Path(args.run) if args.run else WORK / f"stress_{args.target}_recipe"
    seconds = None
    if not (run / "checkpoint.pt").exists():
        seconds = emda("adapt", "--source", str(epfl / "train/raw.tif"), "--source-labels",
                       str(epfl / "train/labels.tif"), "--target", raw, "--target-z", "0:13",
                       "--out", str(run), "--quiet", "--overwrite")  # fmt: skip
    record = json.loads((run / "recipe.json").read_text())
    for stage in record["stages"]:
        if (run / "stages" / stage["name"] / "checkpoint.pt").exists() and "target" in stage:
            model = str(run / "stages" / stage["name"])
            tag = f"stress_{args.target}_{stage['name']}"
            scores[stage["name"]] = {**score(model, raw, labels, tag, "13:20"),
                                     "status": stage["status"],
                                     "target_statistics": stage["target"]}  # fmt: skip
    scores["recipe"] = {**score(str(run), raw, labels, f"stress_{args.target}_recipe", "13:20"),
                        "model": record["model"], "train_seconds": seconds}  # fmt: skip
    out = HERE / "results" / "stress.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results[args.target] = {**scores, "command": " ".join(["python", *sys.argv])}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print({k: round(100 * v["iou"], 1) for k, v in scores.items()})


if __name__ == "__main__":
    main()
