"""Peak memory of ``emda predict`` on volumes larger than memory should allow.

    python benchmarks/predict_memory.py [--gigabytes 4]

1. A ``--gigabytes`` uint8 zarr volume (z x 8192 x 8192 slices: larger than one block,
   so every slice is cut into 2048^2 blocks with a halo) tiled from the EPFL test volume
   (../shared/data, else the bundled crop), predicted to a zarr output by a one-level,
   one-channel U-Net: the pipeline's memory (reading blocks, normalising, blending,
   writing chunks) with as little network as possible, so that 4 GB runs in minutes on
   two cores.
2. emda's real network (base 16, depth 4; 256^2 tiles, batch 8) on one 4096^2 and one
   8192^2 slice: the peak should not grow with the slice.

Peak resident memory is what ``/usr/bin/time -v`` reports for the whole ``emda predict``
process. Writes benchmarks/results/predict_memory.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emda import __version__
from emda.data.normalization import IntensityRange, Normalization
from emda.io.volume import open_volume
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import Checkpoint, save_checkpoint

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "epfl_lucchi_pp" / "test" / "raw.tif"
CROP = HERE.parent / "emda" / "demo_data" / "epfl_test" / "raw.tif"
SIDE = 8192


def tiled_volume(path: Path, shape: tuple[int, int, int], tile: np.ndarray) -> None:
    """A zarr volume made of copies of ``tile`` (z, y, x), written slice by slice."""
    import zarr

    out = zarr.create_array(store=str(path), shape=shape, chunks=(1, 1024, 1024), dtype="uint8")
    reps = (1, -(-shape[1] // tile.shape[1]), -(-shape[2] // tile.shape[2]))
    for z in range(shape[0]):
        out[z] = np.tile(tile[z % tile.shape[0]][None], reps)[0, : shape[1], : shape[2]]


def checkpoint(path: Path, config: UNetConfig) -> Path:
    torch.manual_seed(0)
    model = UNet(config)
    save_checkpoint(Checkpoint(config, model.state_dict(), Normalization(),
                               IntensityRange(0.0, 255.0), None, "ft", {}, 0), path)  # fmt: skip
    return path


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of ``emda`` with ``args``."""
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "emda", *args],
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return kb / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "predict_memory.json")
    args = parser.parse_args()
    source = SHARED if SHARED.exists() else CROP
    tile = open_volume(source).read(slice(0, 8))
    work = Path(tempfile.mkdtemp(prefix="emda-memory-"))
    result: dict = {"emda_version": __version__, "source_of_tiles": source.name, "runs": []}
    try:
        n_slices = max(1, round(args.gigabytes * 2**30 / SIDE**2))
        big = work / "big.zarr"
        t0 = time.perf_counter()
        tiled_volume(big, (n_slices, SIDE, SIDE), tile)
        print(f"wrote {n_slices} x {SIDE} x {SIDE} uint8 "
              f"({n_slices * SIDE**2 / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s",
              flush=True)  # fmt: skip
        light = checkpoint(work / "light.pt", UNetConfig(base_channels=1, depth=1))
        common = ["--quiet", "--device", "cpu", "--threads", str(args.threads)]
        mb, s = peak_rss(["predict", str(light), str(big), "--output", str(work / "p.zarr"),
                          "--tile-size", "1024", "--overlap", "0", *common])  # fmt: skip
        run = {"volume": [n_slices, SIDE, SIDE], "gib": round(n_slices * SIDE**2 / 2**30, 2),
               "network": "U-Net base 1, depth 1", "tile": 1024, "overlap": 0,
               "block": 2048, "peak_rss_mb": round(mb), "seconds": round(s, 1)}  # fmt: skip
        result["runs"].append(run)
        print(run, flush=True)
        shutil.rmtree(work / "p.zarr", ignore_errors=True)
        real = checkpoint(work / "real.pt", UNetConfig(base_channels=16, depth=4))
        for side in (4096, 8192):
            vol = work / f"slice{side}.zarr"
            tiled_volume(vol, (1, side, side), tile)
            mb, s = peak_rss(["predict", str(real), str(vol), "--output",
                              str(work / f"p{side}.zarr"), *common])  # fmt: skip
            run = {"volume": [1, side, side], "network": "U-Net base 16, depth 4",
                   "tile": 256, "overlap": 0.25, "block": 2048, "peak_rss_mb": round(mb),
                   "seconds": round(s, 1)}  # fmt: skip
            result["runs"].append(run)
            print(run, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
