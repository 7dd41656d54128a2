"""Build the pretrained source models that ship with emda (``emda models``).

    python benchmarks/pretrained.py train     # FT on each public volume (cpu profile)
    python benchmarks/pretrained.py package [epfl vnc]  # float16 weights, scores, cards

Each model is ``emda adapt --method ft`` on one public labelled volume with the paper
table's cpu profile (1500 iterations of 8 x 128^2, base 16, seed 0), so a shipped model
is exactly a row of that table's FT column:

- ``epfl``: EPFL CA1 hippocampus FIB-SEM, Lucchi++ training volume (all 165 slices);
  scored in-domain on the EPFL test volume and, with target batch norm, on VNC z 13-19;
- ``vnc``: Drosophila VNC ssTEM z 0-12; scored in-domain on z 13-19 and, with target
  batch norm, on the EPFL test volume.

``package`` stores the weights in float16 (half the size), scores the stored models (the
cards' numbers are theirs), checks that each is within 0.1 IoU of its float32 original
on the VNC test slices, and adds the record of the source's objects that ``emda adapt``
writes (the minimum size of ``emda instances``).
Results: ``benchmarks/results/pretrained.json``; model cards: ``emda/pretrained/``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work" / "pretrained"
RESULTS = HERE / "results" / "pretrained.json"
SHIPPED = REPO / "emda" / "pretrained"
DATA = Path("../shared/data")  # relative to the repository, as the paper table's
EPFL, VNC = DATA / "epfl_lucchi_pp", DATA / "drosophila_vnc"
PROFILE = ["--base-channels", "16", "--iterations", "1500", "--batch-size", "8",
           "--patch-size", "128", "--seed", "0"]  # fmt: skip

MODELS = {
    "epfl": {
        "source": (EPFL / "train/raw.tif", EPFL / "train/labels.tif", None),
        "in_domain": (EPFL / "test/raw.tif", EPFL / "test/labels.tif", None),
        "cross_domain": (VNC / "raw.tif", VNC / "labels.tif", "13:20", "0:13"),
        "scored_on": ("EPFL test", "VNC z 13-19"),
        "description": "EPFL CA1 hippocampus (mouse), FIB-SEM, 5 nm isotropic; Lucchi++ "
        "mitochondria labels of the training volume (165 slices of 768 x 1024)",
        "licence": "EPFL dataset terms (research use); Lucchi++ labels (Casser et al. 2020)",
    },
    "vnc": {
        "source": (VNC / "raw.tif", VNC / "labels.tif", "0:13"),
        "in_domain": (VNC / "raw.tif", VNC / "labels.tif", "13:20"),
        "cross_domain": (EPFL / "test/raw.tif", EPFL / "test/labels.tif", None, None),
        "scored_on": ("VNC z 13-19", "EPFL test"),
        "description": "Drosophila larva ventral nerve cord, ssTEM, 50 x 4.6 x 4.6 nm "
        "(Gerhard et al. 2013), mitochondria labels of slices 0-12 of stack 1",
        "licence": "CC BY-NC-SA 3.0 (the training data's): non-commercial use",
    },
}


def emda(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emda", *args], cwd=REPO, check=True)
    return time.perf_counter() - start


def train() -> None:
    for name, model in MODELS.items():
        run = WORK / name
        if (run / "checkpoint.pt").exists():
            continue
        raw, labels, z = model["source"]
        seconds = emda("adapt", "--method", "ft", "--source", str(raw), "--source-labels",
                       str(labels), *(["--source-z", z] if z else []), "--out", str(run),
                       "--quiet", "--overwrite", *PROFILE)  # fmt: skip
        (run / "train_seconds.txt").write_text(f"{seconds:.1f}\n")


def _score(run: Path, raw, labels, z, tag: str) -> dict:
    pred = WORK / f"{tag}.zarr"
    if not pred.exists():  # an interrupted prediction of this model continues
        partial = any(WORK.glob(f"{tag}*.emda-partial*"))
        emda("predict", str(run), str(raw), "-o", str(pred), "--quiet",
             "--resume" if partial else "--overwrite")  # fmt: skip
    report = WORK / f"{tag}.json"
    emda("evaluate", str(pred), "--labels", str(labels), *(["--z-range", z] if z else []),
         "--json", str(report), "--overwrite")  # fmt: skip
    (scores,) = json.loads(report.read_text())
    return {k: round(float(scores[k]), 4) for k in ("iou", "precision", "recall")}


def score(run: Path, name: str, parts: tuple[str, ...] = ("in_domain", "cross")) -> dict:
    """In-domain IoU of ``run``, and with target batch norm on the other volume."""
    model = MODELS[name]
    raw, labels, z = model["in_domain"]
    here, there = model["scored_on"]
    tag = run.name
    found = {}
    if "in_domain" in parts:
        found["in_domain"] = {**_score(run, raw, labels, z, f"{tag}_in"), "on": here}
    if "cross" in parts:
        raw, labels, z, target_z = model["cross_domain"]
        bn = WORK / f"{tag}_target_bn"
        zs = ["--target-z", target_z] if target_z else []
        emda("recalibrate", str(run), "--target", str(raw), *zs, "--out", str(bn), "--overwrite")
        found["cross_domain_target_bn"] = {**_score(bn, raw, labels, z, f"{tag}_cross"),
                                           "on": there}  # fmt: skip
    return found


CHECKED_ON = {"epfl": "cross", "vnc": "in_domain"}


def source_record(model: dict) -> dict | None:
    """The record of the source's objects that ``emda adapt`` now writes."""
    from emda.analysis.source_objects import source_objects
    from emda.evaluation.evaluate import parse_z_range
    from emda.io.volume import open_volume, read_labels

    raw_path, labels_path, z = model["source"]
    raw = open_volume(REPO / raw_path)
    start, stop = parse_z_range(z, raw.shape[0])
    return source_objects([(raw, read_labels(REPO / labels_path), range(start, stop))])


def package(names: list[str]) -> None:
    import torch

    from emda.model.checkpoint import load_raw

    SHIPPED.mkdir(exist_ok=True)
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record["command"] = "python benchmarks/pretrained.py train && ... package"
    for name in names:
        model = MODELS[name]
        data = load_raw(WORK / name)
        data["state_dict"] = {k: v.half() if v.is_floating_point() else v
                              for k, v in data["state_dict"].items()}  # fmt: skip
        data["heads"] = {}  # training-only heads are not shipped
        half = WORK / f"{name}_half"
        half.mkdir(exist_ok=True)
        if not (half / "checkpoint.pt").exists():  # rewritten, it would restart predictions
            torch.save(data, half / "checkpoint.pt")
        stored = score(half, name)
        # float32 against float16 on the VNC volume, the quicker to predict of the two
        part = CHECKED_ON[name]
        full = score(WORK / name, name, (part,))
        key = "in_domain" if part == "in_domain" else "cross_domain_target_bn"
        gap = abs(stored[key]["iou"] - full[key]["iou"])
        record[name] = {"float16": stored, "float32": full}
        if gap > 0.001:
            sys.exit(f"{name}: float16 weights score {gap:.4f} IoU from float32; not shipped")
        data["training"]["source_objects"] = source_record(model)  # emda instances' default
        torch.save(data, SHIPPED / f"{name}.pt")
        card = {"name": name, "training_data": model["description"], "licence": model["licence"],
                "method": "ft", "built_by": "python benchmarks/pretrained.py train (seed 0)",
                "train_seconds": float((WORK / name / "train_seconds.txt").read_text()),
                "scores": stored}  # fmt: skip
        (SHIPPED / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
        RESULTS.write_text(json.dumps(record, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("train", "package"))
    parser.add_argument("models", nargs="*", help=f"of {', '.join(MODELS)} (default: all)")
    args = parser.parse_args()
    if unknown := set(args.models) - set(MODELS):
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    WORK.mkdir(parents=True, exist_ok=True)
    train() if args.step == "train" else package(args.models or list(MODELS))


if __name__ == "__main__":
    main()
