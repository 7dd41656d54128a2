"""emda predict vs MONAI's sliding_window_inference, and vs the bare forward passes.

    python benchmarks/predict_throughput.py [--slices 16] [--repeats 2]

Same U-Net weights (base 16, depth 4), same 256^2 tiles, overlap 0.25, Gaussian
blending and 8 tiles per forward pass, on the first ``--slices`` slices of the EPFL test
volume (../shared/data; the bundled EPFL crop where it is absent), CPU, 2 threads.

- emda: ``emda.inference.predict.predict`` end to end (read TIFF, normalise, blocks,
  write zarr), in float32 like the other two; on a CPU with bfloat16 instructions also
  in bfloat16 (``emda_bfloat16``), what ``--precision auto`` uses there.
- MONAI: what a MONAI user writes: read the TIFF, normalise, ``sliding_window_inference``
  per slice (its default NCHW memory format), write the same zarr.
- bare forward: only ``model(tiles)`` on the tiles emda's window visits (tiles cut
  beforehand, nothing blended or written): the limit of any sliding-window predictor.

Rounds alternate (emda, MONAI, forward) ``--repeats`` times; the fastest round of each
counts. Writes benchmarks/results/predict_throughput.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emda import __version__
from emda.data.normalization import Normalization
from emda.inference.predict import PredictSettings, predict
from emda.inference.sliding_window import tile_starts
from emda.io.volume import open_volume
from emda.io.writer import write_volume
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import Checkpoint, save_checkpoint
from emda.precision import cpu_has_bfloat16

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "epfl_lucchi_pp" / "test" / "raw.tif"
CROP = HERE.parent / "emda" / "demo_data" / "epfl_test" / "raw.tif"
TILE, OVERLAP, BATCH = 256, 0.25, 8


def run_emda(ckpt: Path, volume: Path, out: Path, precision: str = "float32") -> float:
    t0 = time.perf_counter()
    settings = PredictSettings(tile_size=TILE, overlap=OVERLAP, batch_size=BATCH,
                               blend="gaussian", precision=precision)  # fmt: skip
    predict(ckpt, str(volume), str(out), device=torch.device("cpu"), settings=settings,
            overwrite=True)  # fmt: skip
    return time.perf_counter() - t0


def run_monai(model: torch.nn.Module, volume: Path, out: Path, low: float, high: float) -> float:
    import tifffile
    import zarr
    from monai.inferers import sliding_window_inference

    t0 = time.perf_counter()
    raw = tifffile.imread(volume)
    raw = raw.reshape(-1, *raw.shape[-2:])  # a one-slice TIFF reads back 2D
    result = zarr.create_array(store=str(out), shape=raw.shape, chunks=(1, *raw.shape[1:]),
                               dtype="uint8", overwrite=True)  # fmt: skip
    with torch.inference_mode():
        for z in range(raw.shape[0]):
            x = torch.from_numpy((raw[z].astype(np.float32) - low) / (high - low))[None, None]
            prob = sliding_window_inference(
                x, (TILE, TILE), BATCH, lambda t: torch.sigmoid(model(t)), overlap=OVERLAP,
                mode="gaussian",
            )  # fmt: skip
            result[z] = np.round(prob[0, 0].numpy() * 255).astype(np.uint8)
    return time.perf_counter() - t0


def run_forward(model: torch.nn.Module, slices: np.ndarray) -> float:
    """Only the forward passes over the tiles emda's window visits."""
    model = model.to(memory_format=torch.channels_last)
    tiles = []
    for image in slices:
        h, w = image.shape
        for y in tile_starts(h, TILE, OVERLAP):
            for x in tile_starts(w, TILE, OVERLAP):
                tiles.append(image[y : y + TILE, x : x + TILE])
    batches = [
        torch.from_numpy(np.stack(tiles[i : i + BATCH])[:, None]).contiguous(
            memory_format=torch.channels_last
        )
        for i in range(0, len(tiles), BATCH)
    ]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            torch.sigmoid(model(batch))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "predict_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = SHARED if SHARED.exists() else CROP
    raw = open_volume(source).read(slice(0, args.slices))
    work = Path(tempfile.mkdtemp(prefix="emda-throughput-"))
    try:
        volume = work / "volume.tif"
        write_volume(volume, raw)
        torch.manual_seed(0)
        config = UNetConfig(base_channels=16, depth=4)
        model = UNet(config).eval()
        ckpt = work / "checkpoint.pt"
        intensity = Normalization().fit(open_volume(volume))
        save_checkpoint(Checkpoint(config, model.state_dict(), Normalization(), intensity,
                                   None, "ft", {}, 0), ckpt)  # fmt: skip
        monai_model = copy.deepcopy(model)  # MONAI gets its own copy, NCHW as a user has it
        normalised = intensity.apply(raw)
        lims = (intensity.low, intensity.high)  # the same normalisation for both
        times: dict[str, list[float]] = {"emda": [], "monai": [], "forward": []}
        reduced = cpu_has_bfloat16()  # emda's default there: timed beside the float32 rounds
        if reduced:
            times["emda_bfloat16"] = []
        for r in range(args.repeats):
            times["emda"].append(run_emda(ckpt, volume, work / "emda.zarr"))
            if reduced:
                times["emda_bfloat16"].append(
                    run_emda(ckpt, volume, work / "emda_bf16.zarr", "bfloat16")
                )
            times["monai"].append(run_monai(monai_model, volume, work / "monai.zarr", *lims))
            times["forward"].append(run_forward(copy.deepcopy(model), normalised))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()),
                  flush=True)  # fmt: skip
        import zarr

        a = zarr.open_array(str(work / "emda.zarr"))[:].astype(int)
        b = zarr.open_array(str(work / "monai.zarr"))[:].astype(int)
        best = {k: min(v) for k, v in times.items()}
        voxels = float(raw.size)
        import monai

        result = {
            "volume": f"{source.relative_to(HERE.parent.parent)} z 0:{args.slices}",
            "shape": list(raw.shape),
            "tile": TILE, "overlap": OVERLAP, "batch": BATCH, "blend": "gaussian",
            "threads": args.threads, "cpu": platform.processor() or platform.machine(),
            "seconds": times,
            "voxels_per_s": {k: round(voxels / v) for k, v in best.items()},
            "emda_vs_monai_speedup": round(best["monai"] / best["emda"], 3),
            **({"emda_bfloat16_vs_monai_speedup": round(best["monai"] / best["emda_bfloat16"], 3)}
               if reduced else {}),
            "emda_vs_forward_overhead": round(best["emda"] / best["forward"], 3),
            "monai_vs_forward_overhead": round(best["monai"] / best["forward"], 3),
            "outputs_mean_abs_diff_of_255": round(float(np.abs(a - b).mean()), 3),
            "emda_version": __version__, "monai_version": monai.__version__,
            "torch_version": torch.__version__,
        }  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
