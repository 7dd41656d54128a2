"""Peak memory of ``emda instances`` on a volume larger than memory should allow.

    python benchmarks/instances_memory.py [--gigabytes 4]

A ``--gigabytes`` uint8 {0, 255} zarr mask (z x 8192 x 8192, as in
``predict_memory.py``) tiled from the EPFL test labels (../shared/data, else the
bundled crop's), so its objects are real mitochondria cut at the tile edges, labelled
with ``emda instances`` to a zarr output. Peak resident memory is what
``/usr/bin/time -v`` reports for the whole process; compare with
``results/predict_memory.json``. Writes benchmarks/results/instances_memory.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from predict_memory import SIDE, peak_rss, tiled_volume

from emda import __version__
from emda.io.volume import open_volume

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "epfl_lucchi_pp" / "test" / "labels.tif"
CROP = HERE.parent / "emda" / "demo_data" / "epfl_test" / "labels.tif"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "instances_memory.json")
    args = parser.parse_args()
    source = SHARED if SHARED.exists() else CROP
    tile = (open_volume(source).read(slice(0, 8)) > 0).astype("uint8") * 255
    work = Path(tempfile.mkdtemp(prefix="emda-instances-memory-"))
    try:
        n_slices = max(1, round(args.gigabytes * 2**30 / SIDE**2))
        mask = work / "mask.zarr"
        t0 = time.perf_counter()
        tiled_volume(mask, (n_slices, SIDE, SIDE), tile)
        print(f"wrote {n_slices} x {SIDE} x {SIDE} uint8 in {time.perf_counter() - t0:.0f} s",
              flush=True)  # fmt: skip
        out = work / "labels.zarr"
        command = ["instances", str(mask), "-o", str(out), "--quiet", "--voxel-size", "5,5,5"]
        mb, seconds = peak_rss(command)
        labels = open_volume(out)
        run = {
            "volume": [n_slices, SIDE, SIDE], "gib": round(n_slices * SIDE**2 / 2**30, 2),
            "source_of_tiles": source.name, "objects": dict(labels.array.attrs)[
                "emda_instances"]["count"], "output_dtype": str(labels.dtype),
            "peak_rss_mb": round(mb), "seconds": round(seconds, 1),
            "command": "emda instances MASK.zarr -o LABELS.zarr " + " ".join(command[4:]),
        }  # fmt: skip
        print(run, flush=True)
        result = {"emda_version": __version__, "runs": [run]}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
