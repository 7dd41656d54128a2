"""How do the two datasets' mitochondria differ? (diagnostic, no network)

Looks only at the data, after emda's default normalisation (each volume's 1st/99th
percentiles mapped to 0/1), and measures per label set:

- object size: mean and median length of the foreground runs along y and x (chords),
  in pixels and nm. If one dataset's mitochondria were much larger in pixels, a 2D
  network trained on the other would see them at a scale it never learnt.
- intensity: mean and std of the normalised grey value inside mitochondria and outside,
  and their separation (difference of means over the pooled std).
- texture: mean gradient magnitude inside and outside mitochondria (cristae make a
  textured interior; a uniformly dark interior has little gradient), and over the whole
  image, which needs no labels (how sharp or noisy the raw data are).

Uses label volumes that the protocol keeps from every method (EPFL train and test, VNC
z 13-19), so it sets no default. Writes benchmarks/results/domain_gap_probe.json.

    python benchmarks/domain_gap_probe.py [--data ../shared/data] [--vnc-raw BLURRED]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emda.data.normalization import Normalization
from emda.io.volume import open_volume, read_labels

HERE = Path(__file__).resolve().parent
SETS = {  # name: (folder, z range)
    "epfl_train": ("epfl_lucchi_pp/train", None),
    "epfl_test": ("epfl_lucchi_pp/test", None),
    "vnc_z0_13": ("drosophila_vnc", (0, 13)),
    "vnc_z13_20": ("drosophila_vnc", (13, 20)),
}


def chord_lengths(mask: np.ndarray) -> np.ndarray:
    """Lengths of the foreground runs of a 2D mask along x and along y."""
    lengths = []
    for rows in (mask, mask.T):
        edges = np.diff(np.pad(rows.astype(np.int8), ((0, 0), (1, 1))), axis=1)
        lengths.append(np.nonzero(edges == -1)[1] - np.nonzero(edges == 1)[1])
    return np.concatenate(lengths)


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(image)
    return np.hypot(gy, gx)


def measure(folder: Path, z_range: tuple[int, int] | None, raw_path: Path | None = None) -> dict:
    raw = open_volume(raw_path or folder / "raw.tif")
    labels = read_labels(folder / "labels.tif")
    intensity = Normalization().fit(raw)
    start, stop = z_range or (0, raw.shape[0])
    chords, inside, outside, grad_in, grad_out = [], [], [], [], []
    for z in range(start, stop):
        image = intensity.apply(raw.read(z))
        mask = labels.read(z).astype(bool)
        chords.append(chord_lengths(mask))
        grad = gradient_magnitude(image)
        inside.append(image[mask])
        outside.append(image[~mask])
        grad_in.append(grad[mask])
        grad_out.append(grad[~mask])
    chords_px = np.concatenate(chords)
    fg, bg = np.concatenate(inside), np.concatenate(outside)
    pooled = float(np.sqrt((fg.var() + bg.var()) / 2))
    pixel_nm = raw.voxel_size[2] if raw.voxel_size else float("nan")
    return {
        "slices": [start, stop],
        "pixel_nm": pixel_nm,
        "foreground_share": float(fg.size / (fg.size + bg.size)),
        "chord_px_mean": float(chords_px.mean()),
        "chord_px_median": float(np.median(chords_px)),
        "chord_nm_mean": float(chords_px.mean() * pixel_nm),
        "intensity_mito_mean": float(fg.mean()),
        "intensity_mito_std": float(fg.std()),
        "intensity_background_mean": float(bg.mean()),
        "intensity_background_std": float(bg.std()),
        "separation": float((bg.mean() - fg.mean()) / pooled),
        # the only number here that needs no labels: what a method may look at
        "gradient_mean": float(np.concatenate(grad_in + grad_out).mean()),
        "gradient_mito_mean": float(np.concatenate(grad_in).mean()),
        "gradient_background_mean": float(np.concatenate(grad_out).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument(
        "--vnc-raw",
        help="measure the VNC sets on this volume instead (same shape, e.g. the output of "
        "`emda smooth`); writes domain_gap_probe_<its stem>.json",
    )
    args = parser.parse_args()
    results = {}
    for name, (folder, z_range) in SETS.items():
        if args.vnc_raw and not name.startswith("vnc"):
            continue
        raw = Path(args.vnc_raw) if args.vnc_raw else None
        results[name] = measure(Path(args.data) / folder, z_range, raw)
        print(name, json.dumps(results[name]), flush=True)
    stem = f"_{Path(args.vnc_raw).stem}" if args.vnc_raw else ""
    out = HERE / "results" / f"domain_gap_probe{stem}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
