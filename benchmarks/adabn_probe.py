"""How much of the EPFL -> VNC gap is batch-norm statistics? (AdaBN probe)

Takes the FT baseline model (benchmarks/ft_baseline.sh), re-estimates only its
batch-norm running statistics on 50 random 256^2 patches (batch 8) of the unlabelled
VNC training slices z 0-12, and scores VNC z 13-19 before and after. No weights change,
no label is used. Writes benchmarks/results/adabn_probe.json.

    python benchmarks/adabn_probe.py [--run benchmarks/work/ft_baseline/run]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from emda.checkpoint import load_checkpoint
from emda.inference import SlidingWindowPredictor
from emda.metrics import Confusion
from emda.sampling import PatchSampler
from emda.volume import open_volume, read_labels

HERE = Path(__file__).resolve().parent


def score(model, raw, labels, intensity) -> float:
    predictor = SlidingWindowPredictor(model, torch.device("cpu"), 256, 0.25, 8)
    total = Confusion()
    for z in range(13, 20):
        prob = predictor.predict_slice(intensity.apply(raw.read(z)))
        total = total + Confusion.of(prob >= 0.5, labels.read(z))
    return total.iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default=str(HERE / "work" / "ft_baseline" / "run"))
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    args = parser.parse_args()
    ckpt = load_checkpoint(args.run)
    model = ckpt.build_model()
    raw = open_volume(Path(args.data) / "drosophila_vnc" / "raw.tif")
    labels = read_labels(Path(args.data) / "drosophila_vnc" / "labels.tif")
    intensity = ckpt.normalization.fit(raw)
    before = score(model, raw, labels, intensity)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the probe batches
    sampler = PatchSampler(raw, intensity, 256, z_indices=range(13), augment=True)
    rng = np.random.default_rng(0)
    model.train()
    with torch.no_grad():
        for _ in range(50):
            model(sampler.sample(8, rng).x)
    model.eval()
    after = score(model, raw, labels, intensity)
    result = {"run": args.run, "vnc_z13_20_iou_ft": before, "vnc_z13_20_iou_ft_adabn": after}
    (HERE / "results" / "adabn_probe.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
