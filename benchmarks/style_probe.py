"""What do `--amplitude-mix` and `--smooth-objects` do to the source patches? (diagnostic)

Draws training patches the way `emda adapt` does (the CPU profile's 128^2 patches,
dihedral flips and contrast jitter 0.1) from the source and the target training data of
each direction, and measures, for plain source patches, the same patches after
amplitude mixing (each with a random target patch, w ~ U(0, A)), the same patches with
their labelled objects smoothed (`--smooth-objects`, a ~ U(0, S); it commutes with the
contrast jitter, so smoothing the drawn patches equals smoothing before the jitter, as
training does), smoothed and then mixed (what training with both sees), and the target
patches. No network is involved:

- the mean gradient magnitude of the whole patch (sharpness / texture / noise; the
  label-free number of `domain_gap_probe.py`),
- the standard deviation of the grey values in a patch (contrast),
- inside the source's mitochondria (source labels, which training uses anyway): the
  mean grey value and gradient magnitude; the target's are not measured here (its
  labels are the test's), `domain_gap_probe.json` has them for comparison.

Writes benchmarks/results/style_probe.json.

    python benchmarks/style_probe.py [--data ../shared/data] [--amplitude-mix 0.5]
                                     [--smooth-objects 1.0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from emda.data.normalization import Normalization
from emda.data.sampling import Augmentation, PatchSampler
from emda.data.style import amplitude_mix
from emda.io.volume import open_volume, read_labels

HERE = Path(__file__).resolve().parent
DATA = {  # name: (folder, z slices of the training data)
    "epfl_train": ("epfl_lucchi_pp/train", None),
    "vnc_z0_13": ("drosophila_vnc", range(0, 13)),
}
DIRECTIONS = {"epfl2vnc": ("epfl_train", "vnc_z0_13"), "vnc2epfl": ("vnc_z0_13", "epfl_train")}


def sampler(data: Path, name: str, labelled: bool) -> PatchSampler:
    folder, zs = DATA[name]
    raw = open_volume(data / folder / "raw.tif")
    labels = read_labels(data / folder / "labels.tif") if labelled else None
    augmentation = Augmentation(dihedral=True, intensity_jitter=0.1)
    return PatchSampler(raw, Normalization().fit(raw), 128, labels, zs, augmentation)


def statistics(x: torch.Tensor, y: torch.Tensor | None) -> dict:
    images = x[:, 0].numpy().astype(np.float64)
    gy, gx = np.gradient(images, axis=(1, 2))
    gradient = np.hypot(gy, gx)
    out = {
        "gradient_mean": float(gradient.mean()),
        "patch_std_mean": float(images.std(axis=(1, 2)).mean()),
    }
    if y is not None:
        inside = y[:, 0].numpy() > 0.5
        out["mito_grey_mean"] = float(images[inside].mean())
        out["mito_gradient_mean"] = float(gradient[inside].mean())
        out["background_grey_mean"] = float(images[~inside].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--amplitude-mix", type=float, default=0.5)
    parser.add_argument("--smooth-objects", type=float, default=1.0)
    parser.add_argument("--batches", type=int, default=64, help="batches of 8 per set")
    args = parser.parse_args()
    results = {
        "amplitude_mix": args.amplitude_mix,
        "smooth_objects": args.smooth_objects,
        "patches": 8 * args.batches,
    }
    smoothing = Augmentation(dihedral=False, smooth_objects=args.smooth_objects)
    for direction, (source_name, target_name) in DIRECTIONS.items():
        rng = np.random.default_rng(0)
        smooth_rng = np.random.default_rng(1)  # its own draws: the other sets stay as they were
        source = sampler(args.data, source_name, labelled=True)
        target = sampler(args.data, target_name, labelled=False)
        plain, mixed, tgt, labels, smoothed, both = [], [], [], [], [], []
        for _ in range(args.batches):
            s, t = source.sample(8, rng), target.sample(8, rng)
            weights = torch.from_numpy(rng.uniform(0, args.amplitude_mix, size=8))
            plain.append(s.x)
            mixed.append(amplitude_mix(s.x, t.x, weights))
            sx = torch.from_numpy(np.stack([
                smoothing.objects(x[0].numpy(), y[0].numpy(), smooth_rng)[None]
                for x, y in zip(s.x, s.y)
            ]))  # fmt: skip
            smoothed.append(sx)
            both.append(amplitude_mix(sx, t.x, weights))
            tgt.append(t.x)
            labels.append(s.y)
        y = torch.cat(labels)
        results[direction] = {
            "source_data": source_name,
            "target_data": target_name,
            "source_plain": statistics(torch.cat(plain), y),
            "source_mixed": statistics(torch.cat(mixed), y),
            "source_smoothed": statistics(torch.cat(smoothed), y),
            "source_smoothed_mixed": statistics(torch.cat(both), y),
            "target_plain": statistics(torch.cat(tgt), None),
        }
        print(direction, json.dumps(results[direction], indent=1))
    out = HERE / "results" / "style_probe.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
