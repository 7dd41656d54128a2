"""``emda predict`` with 1 and 2 local Dask workers (one thread each) against one process.

    python benchmarks/dask_scaling.py [--slices 8]

The first ``--slices`` slices of the EPFL test volume (../shared/data, else the bundled
crop), emda's network (base 16, depth 4, random weights: the speed does not depend on
them), 256^2 tiles, overlap 0.25, zarr output. Each configuration runs as its own
``emda predict`` process, so the Dask cluster's start-up is counted. Also checks that
every output is identical. Writes benchmarks/results/dask_scaling.json.
"""

from __future__ import annotations

import argparse
import json
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
from emda.io.writer import write_volume
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import Checkpoint, save_checkpoint

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "epfl_lucchi_pp" / "test" / "raw.tif"
CROP = HERE.parent / "emda" / "demo_data" / "epfl_test" / "raw.tif"

SETTINGS = {
    "1 process, 1 thread": ["--threads", "1"],
    "1 process, 2 threads": ["--threads", "2"],
    "1 Dask worker, 1 thread": ["--workers", "1", "--threads", "1"],
    "2 Dask workers, 1 thread each": ["--workers", "2", "--threads", "1"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dask_scaling.json")
    args = parser.parse_args()
    source = SHARED if SHARED.exists() else CROP
    work = Path(tempfile.mkdtemp(prefix="emda-dask-"))
    try:
        raw = open_volume(source).read(slice(0, args.slices))
        volume = work / "volume.zarr"
        write_volume(volume, raw)
        torch.manual_seed(0)
        config = UNetConfig(base_channels=16, depth=4)
        ckpt = work / "checkpoint.pt"
        weights = UNet(config).state_dict()
        save_checkpoint(Checkpoint(config, weights, Normalization(), IntensityRange(0.0, 255.0),
                                   None, "ft", {}, 0), ckpt)  # fmt: skip
        runs, outputs = [], {}
        for name, extra in SETTINGS.items():
            out = work / f"{len(runs)}.zarr"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "emda", "predict", str(ckpt), str(volume),
                            "--output", str(out), "--quiet", "--device", "cpu", *extra],
                           check=True)  # fmt: skip
            seconds = time.perf_counter() - t0
            outputs[name] = open_volume(out).read()
            runs.append({"setting": name, "seconds": round(seconds, 1),
                         "voxels_per_s": round(raw.size / seconds)})  # fmt: skip
            print(runs[-1], flush=True)
        first = next(iter(outputs.values()))
        base = runs[0]["seconds"]
        result = {
            "volume": f"{source.name} z 0:{args.slices}", "shape": list(raw.shape),
            "runs": runs,
            "speedup_2_workers_vs_1_worker": round(runs[2]["seconds"] / runs[3]["seconds"], 2),
            "speedup_vs_1_process_1_thread": {r["setting"]: round(base / r["seconds"], 2)
                                              for r in runs},
            "output_identical_to_1_process_1_thread": {
                name: bool(np.array_equal(first, o)) for name, o in outputs.items()
            },
            "emda_version": __version__,
        }  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
