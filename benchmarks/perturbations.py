"""How models hold up on targets made harder: one perturbation at a time, and combined.

    python benchmarks/perturbations.py --direction epfl2vnc \
        --models plain=KEY,KEY,KEY --models randomised=KEY,KEY,KEY [--perturbations a,b]

Until more labelled domains exist, the benchmark's target volumes are perturbed into new
targets and scored against their own labels:

- ``2x``: binned 2 x 2 in-plane (the mean of each block; a label pixel is mitochondrion
  when at least half its block is), the voxel size metadata doubled in (y, x);
- ``gamma_1.5`` / ``gamma_0.67``: grey levels g -> 255 (g / 255)^gamma (darker / lighter
  mid-tones);
- ``contrast_0.6``: grey levels scaled by 0.6 around the volume's mean;
- ``noise_15``: Gaussian noise of 15 grey levels (seeded);
- ``blur_1.5``: an in-plane Gaussian blur of 1.5 pixels (a softer point-spread function);
- ``2x_dark_noisy``: ``2x``, then gamma 1.5, contrast 0.7 and noise of 12 grey levels
  (``stress.py``'s harder target).

EPFL -> VNC: the whole VNC stack is perturbed; its slices 0-12 are the unlabelled target,
13-19 are scored. VNC -> EPFL: every 4th slice of EPFL train (the unlabelled target) and
of EPFL test (scored), to keep the matrix affordable on a CPU; their metadata says the
slices are 20 nm apart (``stress.py`` perturbs the whole EPFL volumes).

Each model (a run directory, or a paper-table key of the CPU profile, whose run is
``benchmarks/work/cpu/KEY/run``) is recalibrated on the perturbed target's unlabelled
slices (target batch norm, what ``emda adapt --target`` ends with) and scored on its
test slices, ``--planes xy``, threshold 0.5. Models of one label are seeds of one
setting: the report gives their mean and spread. Appends to
benchmarks/results/perturbations.json; every prediction is kept under
benchmarks/work/perturbations/ so a rerun only adds what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness.running import emda as run_emda  # noqa: E402

REPO = HERE.parent
DATA = REPO.parent / "shared" / "data"
WORK = HERE / "work" / "perturbations"
RESULTS = HERE / "results" / "perturbations.json"

#: each perturbation as the operations applied in order: (name, parameter)
PERTURBATIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "none": (),
    "2x": (("bin", 2),),
    "gamma_1.5": (("gamma", 1.5),),
    "gamma_0.67": (("gamma", 0.67),),
    "contrast_0.6": (("contrast", 0.6),),
    "noise_15": (("noise", 15),),
    "blur_1.5": (("blur", 1.5),),
    "2x_dark_noisy": (("bin", 2), ("gamma", 1.5), ("contrast", 0.7), ("noise", 12)),
}


def perturb(
    raw: np.ndarray, labels: np.ndarray, voxel: tuple, ops: tuple[tuple[str, float], ...]
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The perturbed (raw uint8, labels uint8, voxel size); noise is seeded, so a volume
    is always perturbed the same way."""
    from scipy import ndimage

    x, mask = raw.astype(np.float32), (labels > 0).astype(np.uint8)
    for op, value in ops:
        if op == "bin":  # rounded to grey levels, as a binning microscope records them
            x = np.round(_bin2(x))
            mask = (_bin2(mask.astype(np.float32)) >= 0.5).astype(np.uint8)
            voxel = (voxel[0], 2 * voxel[1], 2 * voxel[2])
        elif op == "gamma":
            x = 255 * (np.clip(x, 0, 255) / 255) ** value
        elif op == "contrast":
            x = (x - x.mean()) * value + x.mean()
        elif op == "noise":
            x = x + np.random.default_rng(0).normal(0, value, x.shape)
        elif op == "blur":
            x = ndimage.gaussian_filter(x, (0, value, value), mode="reflect")
        else:
            raise ValueError(f"unknown perturbation {op!r}")
    return np.clip(np.round(x), 0, 255).astype(np.uint8), mask, voxel


def _bin2(a: np.ndarray) -> np.ndarray:
    h, w = (a.shape[1] // 2) * 2, (a.shape[2] // 2) * 2
    a = a[:, :h, :w]
    return (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]) / 4


def _write(name: str, raw_path: Path, labels_path: Path, ops, every: int) -> tuple[str, str]:
    """A perturbed copy of a volume (every ``every``-th slice), made once."""
    from emda.io.volume import open_volume
    from emda.io.writer import write_volume

    name += "" if every == 1 else f"_every{every}"
    raw_out, labels_out = WORK / f"{name}_raw.tif", WORK / f"{name}_labels.tif"
    if not (raw_out.exists() and labels_out.exists()):
        WORK.mkdir(parents=True, exist_ok=True)
        raw, labels = open_volume(str(raw_path)), open_volume(str(labels_path))
        x, y, voxel = perturb(raw.read()[::every], labels.read()[::every], raw.voxel_size, ops)
        # keeping every n-th slice makes the slices n times as far apart
        voxel = (voxel[0] * every, *voxel[1:]) if voxel else voxel
        write_volume(str(raw_out), x, voxel)
        write_volume(str(labels_out), y, voxel)
    return str(raw_out), str(labels_out)


def target(direction: str, perturbation: str, every: int = 4) -> dict:
    """The perturbed target of a direction: its unlabelled training volume and slices,
    and its scored volume, labels and slices. EPFL keeps every ``every``-th slice."""
    ops = PERTURBATIONS[perturbation]
    if direction == "epfl2vnc":
        vnc = DATA / "drosophila_vnc"
        raw, labels = _write(f"vnc_{perturbation}", vnc / "raw.tif", vnc / "labels.tif", ops, 1)
        return {"train": raw, "train_z": "0:13", "test": raw, "labels": labels, "test_z": "13:20"}
    epfl = DATA / "epfl_lucchi_pp"
    train, _ = _write(f"epfl_train_{perturbation}", epfl / "train/raw.tif",
                      epfl / "train/labels.tif", ops, every)  # fmt: skip
    test, labels = _write(f"epfl_test_{perturbation}", epfl / "test/raw.tif",
                          epfl / "test/labels.tif", ops, every)  # fmt: skip
    return {"train": train, "train_z": None, "test": test, "labels": labels, "test_z": None}


def model_path(name: str) -> Path:
    """A run directory, or the run of a CPU-profile paper-table key."""
    path = Path(name)
    if (path / "checkpoint.pt").exists():
        return path
    run = HERE / "work" / "cpu" / name / "run"
    if not (run / "checkpoint.pt").exists():
        sys.exit(f"error: {name}: neither a run directory nor a finished paper-table key")
    return run


def score(model: Path, tag: str, where: dict, precision: str) -> dict:
    """Target batch norm on the perturbed target, then predict and evaluate; kept in
    ``WORK/TAG_result.json`` so that a rerun skips it."""
    kept = WORK / f"{tag}_result.json"
    if kept.exists():
        return json.loads(kept.read_text())
    log = WORK / "log.txt"
    bn, prob, scores = WORK / f"{tag}_bn", WORK / f"{tag}_prob.tif", WORK / f"{tag}_scores.json"
    z = ["--target-z", where["train_z"]] if where["train_z"] else []
    run_emda("recalibrate", str(model), "--target", where["train"], *z, "--out", str(bn),
             "--overwrite", log=log)  # fmt: skip
    run_emda("predict", str(bn), where["test"], "--output", str(prob), "--planes", "xy",
             "--precision", precision, "--quiet", "--overwrite", log=log)  # fmt: skip
    z = ["--z-range", where["test_z"]] if where["test_z"] else []
    run_emda("evaluate", str(prob), "--labels", where["labels"], *z, "--json", str(scores),
             "--overwrite", log=log)  # fmt: skip
    (result,) = json.loads(scores.read_text())
    result = {k: result[k] for k in ("iou", "precision", "recall")}
    kept.write_text(json.dumps(result))
    prob.unlink()  # the scores are what is kept; the maps are large
    return result


def _summary(values: list[float]) -> str:
    """Mean IoU %, +- the standard deviation over seeds when there are several."""
    mean = f"{100 * float(np.mean(values)):.1f}"
    return f"{mean} +- {100 * float(np.std(values, ddof=1)):.1f}" if len(values) > 1 else mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direction", choices=["epfl2vnc", "vnc2epfl"], required=True)
    parser.add_argument(
        "--models",
        action="append",
        required=True,
        metavar="LABEL=RUN,...",
        help="models of one setting (runs or paper-table keys), seeds apart",
    )
    parser.add_argument(
        "--perturbations",
        default=",".join(PERTURBATIONS),
        help="comma-separated, among: " + ", ".join(PERTURBATIONS),
    )
    parser.add_argument(
        "--precision",
        default="bfloat16",
        choices=["float32", "bfloat16"],
        help="emda predict --precision (the same for every model)",
    )
    args = parser.parse_args()  # fmt: skip
    if not DATA.is_dir():
        sys.exit(f"needs the benchmark volumes in {DATA}")
    perturbations = args.perturbations.split(",")
    if unknown := set(perturbations) - set(PERTURBATIONS):
        sys.exit(f"error: --perturbations: unknown {sorted(unknown)}")
    groups = {}
    for text in args.models:
        label, sep, names = text.partition("=")
        if not sep or not names:
            sys.exit(f"error: --models {text!r}: expected LABEL=RUN[,RUN...]")
        groups[label] = [model_path(n) for n in names.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    block = results.setdefault(args.direction, {})
    for perturbation in perturbations:
        where = target(args.direction, perturbation)
        row = block.setdefault(perturbation, {})
        for label, models in groups.items():
            runs = []
            for model in models:
                # the precision is in the tag: scores in another one are never reused
                tag = f"{args.direction}_{perturbation}_{model.parent.name}_{model.name}"
                tag += "" if args.precision == "bfloat16" else f"_{args.precision}"
                shown = model.relative_to(REPO) if model.is_relative_to(REPO) else model
                runs.append({"model": str(shown), **score(model, tag, where, args.precision)})
            row[label] = {"iou": _summary([r["iou"] for r in runs]), "runs": runs,
                          "predict_precision": args.precision,
                          "command": " ".join(["python", *sys.argv])}  # fmt: skip
            print(args.direction, perturbation, label, row[label]["iou"], flush=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
