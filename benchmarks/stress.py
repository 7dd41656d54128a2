"""The recipe on targets made harder, against FT with target batch norm, stage by stage.

    python benchmarks/stress.py --target vnc_2x_dark_noisy [--run RUN] [--ft RUN]
    python benchmarks/stress.py --target epfl_2x_dark_noisy [--run RUN] [--ft RUN]
    python benchmarks/stress.py --report    # every target so far: docs/results.md's table

Until more labelled domains exist, the benchmark volumes are perturbed into new targets
scored against their own labels (``perturbations.py`` defines them):

- ``vnc``: the VNC as it is (``--run``: a finished recipe run on it, e.g. the paper-table
  row's ``benchmarks/work/cpu/<key>/run``); ``vnc_NAME``: the VNC with perturbation NAME,
  e.g. ``vnc_2x_dark_noisy``: binned 2 x 2 in-plane (9.2 nm pixels), gamma 1.5 (darker
  mid-tones), contrast 0.7 around the mean, Gaussian noise of 12 grey levels (seeded).
  Source: the EPFL training volume. Target: slices 0-12, unlabelled; scored: 13-19.
- ``epfl`` and ``epfl_NAME``: the same for EPFL, whole volumes (every slice, unlike
  ``perturbations.py``'s matrix). Source: the VNC's slices 0-12 (the paper table's VNC ->
  EPFL source). Target: EPFL train, unlabelled; scored: EPFL test, every slice.

FT is a source-only model (``--ft``; by default resampling.py's EPFL FT, or for EPFL
targets a VNC FT trained here with emda's defaults), recalibrated on the target's
unlabelled slices (what ``emda adapt --method ft --target`` ends with); the recipe is
``emda adapt`` with no method (trained here unless ``--run``). Every stage's model, the
one the recipe kept and FT are scored (``--planes xy``, threshold 0.5). Appends to
benchmarks/results/stress.json.
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

TARGETS = tuple(
    f"{volume}_{name}" if name != "none" else volume
    for volume in ("vnc", "epfl")
    for name in PERTURBATIONS
)  # fmt: skip
VNC, EPFL = DATA / "drosophila_vnc", DATA / "epfl_lucchi_pp"
RESULTS = HERE / "results" / "stress.json"


def stressed(name: str) -> dict:
    """Where a stress target's source, unlabelled target and scored slices are."""
    volume, _, perturbation = name.partition("_")
    if volume == "vnc":
        direction, every, z = "epfl2vnc", 1, {"train_z": "0:13", "test_z": "13:20"}
        source = {"raw": EPFL / "train/raw.tif", "labels": EPFL / "train/labels.tif", "z": None}
        ft, test = WORK / "epfl_ft", (VNC / "raw.tif", VNC / "labels.tif")
        originals = {"train": test[0], "test": test[0], "labels": test[1]}
    else:
        direction, every, z = "vnc2epfl", 1, {"train_z": None, "test_z": None}
        source = {"raw": VNC / "raw.tif", "labels": VNC / "labels.tif", "z": "0:13"}
        ft, test = WORK / "vnc_ft", (EPFL / "test/raw.tif", EPFL / "test/labels.tif")
        originals = {"train": EPFL / "train/raw.tif", "test": test[0], "labels": test[1]}
    # as they are, the volumes themselves, not copies
    where = target(direction, perturbation, every) if perturbation else z | originals
    return {**{k: str(v) if isinstance(v, Path) else v for k, v in where.items()},
            "source": source, "ft": ft}  # fmt: skip


def source_flags(source: dict) -> list[str]:
    flags = ["--source", str(source["raw"]), "--source-labels", str(source["labels"])]
    return flags + (["--source-z", source["z"]] if source["z"] else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS)
    parser.add_argument("--report", action="store_true", help="print every target's scores")
    parser.add_argument("--run", help="a finished recipe run on this target")
    parser.add_argument("--ft", help="a source-only FT run (else the default, see above)")
    args = parser.parse_args()
    if args.report and not RESULTS.is_file():
        sys.exit(f"error: {RESULTS}: no stress results yet")
    if args.report:
        return write_report(report(json.loads(RESULTS.read_text())))
    if not args.target:
        parser.error("--target is required (or --report)")
    if not DATA.is_dir():
        sys.exit(f"needs the benchmark volumes in {DATA}")
    WORK.mkdir(parents=True, exist_ok=True)
    where = stressed(args.target)
    raw, labels, test_z = where["test"], where["labels"], where["test_z"]
    train_z = ["--target-z", where["train_z"]] if where["train_z"] else []
    ft = Path(args.ft) if args.ft else where["ft"]
    if not (ft / "checkpoint.pt").exists():
        emda("adapt", "--method", "ft", *source_flags(where["source"]), "--out", str(ft),
             "--quiet", "--overwrite")  # fmt: skip
    ft_bn = str(WORK / f"stress_{args.target}_ft_bn")
    emda("recalibrate", str(ft), "--target", where["train"], *train_z, "--out", ft_bn,
         "--overwrite")  # fmt: skip
    scores = {"ft_target_bn": score(ft_bn, raw, labels, f"stress_{args.target}_ft", test_z)}
    run = Path(args.run) if args.run else WORK / f"stress_{args.target}_recipe"
    seconds = None
    if not (run / "checkpoint.pt").exists():
        seconds = emda("adapt", *source_flags(where["source"]), "--target", where["train"],
                       *train_z, "--out", str(run), "--quiet", "--overwrite")  # fmt: skip
    record = json.loads((run / "recipe.json").read_text())
    for stage in record["stages"]:
        if (run / "stages" / stage["name"] / "checkpoint.pt").exists() and "target" in stage:
            model = str(run / "stages" / stage["name"])
            tag = f"stress_{args.target}_{stage['name']}"
            scores[stage["name"]] = {**score(model, raw, labels, tag, test_z),
                                     "status": stage["status"],
                                     "target_statistics": stage["target"]}  # fmt: skip
    scores["recipe"] = {**score(str(run), raw, labels, f"stress_{args.target}_recipe", test_z),
                        "model": record["model"], "train_seconds": seconds}  # fmt: skip
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.target] = {**scores, "ft": str(ft), "command": " ".join(["python", *sys.argv])}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print({k: round(100 * v["iou"], 1) for k, v in scores.items() if isinstance(v, dict)})


def report(results: dict) -> str:
    """One row per target: IoU of FT with target BN and of each stage (share of the target
    each marked, label-free), and the stage emda's safeguard keeps (safeguard_replay.py)."""
    from safeguard_replay import replay, stress_stages

    lines = ["| target | FT + target BN | stage 1 | stage 2 | stage 3 | recipe keeps |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, scores in results.items():
        stages = stress_stages(scores)
        cells = [f"{100 * scores[s['name']]['iou']:.1f} ({100 * s['target']['foreground']:.2f} %)"
                 for s in stages]  # fmt: skip
        kept = replay(stages)["emda"]
        ft = 100 * scores["ft_target_bn"]["iou"]
        lines.append(f"| `{name}` | {ft:.1f} | {' | '.join(cells)} | {kept}: "
                     f"{100 * scores[kept]['iou']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def write_report(table: str, doc: Path = HERE.parent / "docs" / "results.md") -> None:
    """``table`` printed, and in ``doc`` between its stress-report markers."""
    print(table)
    start, end = "<!-- stress-report:start -->\n", "\n<!-- stress-report:end -->"
    text = doc.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        doc.write_text(head + start + table + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    main()
