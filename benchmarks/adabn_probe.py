"""How much of the EPFL -> VNC gap is batch-norm statistics? (AdaBN probe)

For each finished run given, re-estimates only the batch-norm running statistics on
the unlabelled VNC training slices z 0-12 with ``emda.training.batchnorm.recalibrate_batchnorm``
(the same call and settings ``emda adapt`` uses by default: 100 batches of 8 patches of
the run's training patch size, seed 0), and scores VNC z 13-19 before and after (results
of earlier runs in the file are kept). No weights change and no label is used.
Writes benchmarks/results/adabn_probe.json.

    python benchmarks/adabn_probe.py [RUN_DIR ...]   # default: FT baseline + first DA runs
"""

import argparse
import json
from pathlib import Path

import torch

from emda.data.sampling import Augmentation, PatchSampler
from emda.evaluation.metrics import Confusion
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.io.volume import open_volume, read_labels
from emda.model.checkpoint import load_checkpoint
from emda.training.batchnorm import recalibrate_batchnorm

HERE = Path(__file__).resolve().parent
DEFAULT_RUNS = [HERE / "work" / "ft_baseline" / "run"] + [
    HERE / "work" / "methods_first_numbers" / m for m in ("mmd", "coral", "dann", "ynet")
]


def score(model, raw, labels, intensity) -> float:
    predictor = SlidingWindowPredictor(model, torch.device("cpu"), 256, 0.25, 8)
    total = Confusion()
    for z in range(13, 20):
        prob = predictor.predict_slice(intensity.apply(raw.read(z)))
        total = total + Confusion.of(prob >= 0.5, labels.read(z))
    return total.iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="*", default=[str(r) for r in DEFAULT_RUNS])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    args = parser.parse_args()
    raw = open_volume(Path(args.data) / "drosophila_vnc" / "raw.tif")
    labels = read_labels(Path(args.data) / "drosophila_vnc" / "labels.tif")
    out = HERE / "results" / "adabn_probe.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results = {k: v for k, v in results.items() if isinstance(v, dict)}  # drop the old format
    for run in args.runs:
        if not (Path(run) / "checkpoint.pt").exists() or (Path(run) / "state.pt").exists():
            print(f"skipping {run}: not a finished run")
            continue
        ckpt = load_checkpoint(run)
        model = ckpt.build_model().eval()
        intensity = ckpt.normalization.fit(raw)
        before = score(model, raw, labels, intensity)
        patch = int(ckpt.training.get("patch_size", 128))
        sampler = PatchSampler(raw, intensity, patch, None, range(13), Augmentation())
        recalibrate_batchnorm(model, sampler, torch.device("cpu"))
        after = score(model, raw, labels, intensity)
        results[Path(run).name if Path(run).name != "run" else "ft"] = {
            "run": str(run),
            "vnc_z13_20_iou": before,
            "vnc_z13_20_iou_target_bn": after,
        }
        print(json.dumps(results, indent=2))
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
