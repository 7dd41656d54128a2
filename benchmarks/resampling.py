"""What working at one pixel size is worth: targets imaged at twice the source's pixel size.

    python benchmarks/resampling.py [--model RUN]

The targets are the benchmark volumes binned 2 x 2 in-plane (raw: the mean of each 2 x 2
block, as a microscope with pixels twice the size would record; labels: a pixel is
mitochondrion when at least half of its block is), their voxel size metadata doubled in
(y, x): EPFL test at 5 x 10 x 10 nm, the VNC at 50 x 9.2 x 9.2 nm.

One model, FT on the EPFL training volume (seed 0, the CPU profile's 1500 iterations;
trained here unless ``--model`` names one), meets each target three ways:

1. native: the target at its own resolution;
2. binned 2x, resampled: emda's default (target patches for batch norm and prediction
   tiles are resampled to the model's 5 nm);
3. binned 2x, pixel for pixel: ``--no-resample``.

EPFL test (in-domain) is predicted directly, and the binned arms also after ``emda
recalibrate`` on the binned volume itself (target batch norm, no labels). The VNC (EPFL
-> VNC) is predicted after ``emda recalibrate`` on its slices 0-12 (target batch norm,
what ``emda adapt --target`` ends with) and scored on slices 13-19. Slices only
(``--planes xy``), threshold 0.5. The network is the same in every arm, so the
differences are the pixel size's alone. Writes benchmarks/results/resampling.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness.running import emda as run_emda  # noqa: E402

REPO = HERE.parent
DATA = REPO.parent / "shared" / "data"
WORK = HERE / "work" / "resampling"


def emda(*args: str) -> float:
    """One emda command (the paper-table harness's runner), logged to WORK/log.txt."""
    return run_emda(*args, log=WORK / "log.txt")


def binned(raw_path: Path, labels_path: Path, name: str) -> tuple[str, str]:
    """The volume binned 2 x 2 in-plane, with its voxel size metadata updated."""
    from perturbations import perturb

    from emda.io.volume import open_volume
    from emda.io.writer import write_volume

    raw_out, labels_out = WORK / f"{name}_raw.tif", WORK / f"{name}_labels.tif"
    if raw_out.exists() and labels_out.exists():
        return str(raw_out), str(labels_out)
    raw, labels = open_volume(raw_path), open_volume(labels_path)
    x, mask, voxel = perturb(raw.read(), labels.read(), raw.voxel_size, (("bin", 2),))
    write_volume(str(raw_out), x, voxel)
    write_volume(str(labels_out), mask, voxel)
    return str(raw_out), str(labels_out)


def score(model: str, raw: str, labels: str, tag: str, z: str | None, *flags: str) -> dict:
    """Predict and evaluate, kept in ``WORK/{tag}_result.json`` so a rerun skips it."""
    kept = WORK / f"{tag}_result.json"
    if kept.exists():
        return json.loads(kept.read_text())
    prob, scores = WORK / f"{tag}_prob.tif", WORK / f"{tag}_scores.json"
    seconds = emda("predict", model, raw, "--output", str(prob), "--planes", "xy", "--quiet",
                   "--overwrite", *flags)  # fmt: skip
    emda("evaluate", str(prob), "--labels", labels, "--json", str(scores), "--overwrite",
         *(["--z-range", z] if z else []))  # fmt: skip
    (result,) = json.loads(scores.read_text())
    result = {"iou": result["iou"], "precision": result["precision"], "recall": result["recall"],
              "predict_seconds": round(seconds, 1)}  # fmt: skip
    kept.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a finished FT run on EPFL train (else trained here)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs the benchmark volumes in {DATA}")
    WORK.mkdir(parents=True, exist_ok=True)
    epfl, vnc = DATA / "epfl_lucchi_pp", DATA / "drosophila_vnc"
    model = args.model or str(WORK / "epfl_ft")
    if not (Path(model) / "checkpoint.pt").exists():
        emda("adapt", "--method", "ft", "--source", str(epfl / "train/raw.tif"),
             "--source-labels", str(epfl / "train/labels.tif"), "--out", model, "--quiet",
             "--overwrite")  # fmt: skip
    results: dict = {"model": "ft on EPFL train, seed 0, 1500 iterations", "in_domain": {},
                     "epfl2vnc": {}}  # fmt: skip
    epfl_raw, epfl_lab = binned(epfl / "test/raw.tif", epfl / "test/labels.tif", "epfl_test_2x")
    vnc_raw, vnc_lab = binned(vnc / "raw.tif", vnc / "labels.tif", "vnc_2x")
    test = str(epfl / "test/raw.tif"), str(epfl / "test/labels.tif")
    arms = {"native": (*test, []), "binned_2x_resampled": (epfl_raw, epfl_lab, []),
            "binned_2x_pixel_for_pixel": (epfl_raw, epfl_lab, ["--no-resample"])}  # fmt: skip
    for arm, (raw, labels, flags) in arms.items():
        results["in_domain"][arm] = score(model, raw, labels, f"epfl_{arm}", None, *flags)
    for arm in ("binned_2x_resampled", "binned_2x_pixel_for_pixel"):  # + target batch norm
        raw, labels, flags = arms[arm]
        bn = str(WORK / f"epfl_{arm}_bn")
        if not (Path(bn) / "checkpoint.pt").exists():
            emda("recalibrate", model, "--target", raw, "--out", bn, "--overwrite", *flags)
        results["in_domain"][f"{arm}_target_bn"] = score(bn, raw, labels, f"epfl_{arm}_bn",
                                                         None, *flags)  # fmt: skip
    arms = {"native": (str(vnc / "raw.tif"), str(vnc / "labels.tif"), []),
            "binned_2x_resampled": (vnc_raw, vnc_lab, []),
            "binned_2x_pixel_for_pixel": (vnc_raw, vnc_lab, ["--no-resample"])}  # fmt: skip
    for arm, (raw, labels, flags) in arms.items():
        bn = str(WORK / f"vnc_{arm}_bn")
        emda("recalibrate", model, "--target", raw, "--target-z", "0:13", "--out", bn,
             "--overwrite", *flags)  # fmt: skip
        results["epfl2vnc"][arm] = score(bn, raw, labels, f"vnc_{arm}", "13:20", *flags)
    from emda import __version__

    results["emda_version"] = __version__
    results["command"] = "python benchmarks/resampling.py"
    out = HERE / "results" / "resampling.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for name in ("in_domain", "epfl2vnc"):
        print(name, {k: round(100 * v["iou"], 1) for k, v in results[name].items()})


if __name__ == "__main__":
    main()
