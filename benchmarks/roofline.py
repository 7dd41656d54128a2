"""Roofline: the FLOP/s emda achieves against this machine's measured peak, per precision.

    python benchmarks/roofline.py [--device cpu|cuda] [--slices 16] [--repeats 3]
                                  [--steps 6] [--threads N] [--out PATH]

In one run, for every precision the device supports (emda.precision):

- **peak**: a 4096^2 matmul and a 3x3 convolution of 64 channels (8 x 128^2, channels
  last), in that dtype;
- **predict**: ``emda.inference.predict.predict`` end to end (TIFF in, zarr out, xy
  planes, 256^2 tiles, overlap 0.25, 8 tiles a pass) on the first ``--slices`` EPFL test
  slices with the shipped ``emda:epfl`` weights, and the bare forward passes over the
  same tiles; FLOPs = torch's flop counter on one batch of tiles x the batches visited;
- **train**: one optimiser step of every built-in method (8 source + 8 target patches
  of 128^2, the cpu profile's batch), FLOPs counted over forward and backward, and the
  time to draw a batch of patches (sampling, normalisation, augmentation).

The ratio to the peak of the same precision is the figure of merit: absolute times vary
from machine to machine, the ratio much less. Each timing is the median of
``--repeats`` rounds. Writes benchmarks/results/roofline_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from emda import __version__
from emda.data.normalization import Normalization
from emda.data.sampling import Augmentation, PatchSampler
from emda.inference.predict import predict
from emda.inference.settings import PredictSettings
from emda.inference.sliding_window import tile_starts
from emda.io.volume import Volume, open_volume
from emda.io.writer import write_volume
from emda.methods.base import Batch
from emda.methods.registry import load_registry
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import load_checkpoint
from emda.precision import autocast, cpu_flags, dtype_of, supported
from emda.pretrained import resolve
from emda.training.adapt import resolve_method
from emda.training.loop import compute_terms, total_loss

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "epfl_lucchi_pp"
CROPS = HERE.parent / "emda" / "demo_data"
TILE, OVERLAP, BATCH = 256, 0.25, 8
PATCH, PATCHES = 128, 8  # the cpu profile's training batch (per domain)
PRECISIONS = ("float32", "bfloat16", "float16")


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` over ``repeats`` rounds, after one warm-up round."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def counted_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def peaks(device: torch.device, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """FLOP/s of a large matmul and a large convolution computed in ``dtype``."""
    n = 4096
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    matmul = 2 * n**3 / timed(lambda: a @ b, repeats, device)
    x = torch.randn(8, 64, 128, 128, device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3, device=device, dtype=dtype)
    w = w.contiguous(memory_format=torch.channels_last)
    flops = counted_flops(lambda: F.conv2d(x, w, padding=1))
    conv = flops / timed(lambda: F.conv2d(x, w, padding=1), repeats, device)
    return {"matmul": matmul, "conv": conv, "best": max(matmul, conv)}


def tiles_per_slice(shape: tuple[int, int]) -> int:
    return len(tile_starts(shape[0], TILE, OVERLAP)) * len(tile_starts(shape[1], TILE, OVERLAP))


def predict_row(
    volume: Path, raw: np.ndarray, precision: str, device: torch.device, repeats: int, work: Path
) -> dict:
    """emda predict end to end and the bare forward passes, in ``precision``."""
    settings = PredictSettings(tile_size=TILE, overlap=OVERLAP, batch_size=BATCH, planes="xy",
                               precision=precision)  # fmt: skip
    out = work / f"{precision}.zarr"

    def run() -> None:
        predict("emda:epfl", str(volume), str(out), device=device, settings=settings,
                overwrite=True)  # fmt: skip

    seconds = timed(run, repeats, device)
    model = load_checkpoint(resolve("emda:epfl")).build_model().eval()
    model = model.to(device, memory_format=torch.channels_last)
    batch = torch.rand(BATCH, 1, TILE, TILE, device=device)
    batch = batch.contiguous(memory_format=torch.channels_last)
    dtype = dtype_of(precision)
    with torch.inference_mode():
        per_tile = counted_flops(lambda: model(batch)) / BATCH
    tiles = raw.shape[0] * tiles_per_slice(raw.shape[1:])

    def forward() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            for _ in range(-(-tiles // BATCH)):
                model(batch)

    forward_seconds = timed(forward, repeats, device)
    flops = per_tile * tiles
    import zarr

    prob = np.asarray(zarr.open_array(str(out))[:])
    return {
        "precision": precision,
        "seconds": seconds,
        "voxels_per_s": raw.size / seconds,
        "flop_per_s": flops / seconds,
        "forward_seconds": forward_seconds,
        "forward_flop_per_s": flops / forward_seconds,
        "overhead": seconds / forward_seconds - 1,  # reading, blending, writing
        "tiles": tiles,
        "flop_per_tile": per_tile,
        "_prob": prob,
    }


def method_names() -> list[str]:
    """The built-in methods (the emda distribution's own entry points)."""
    registry = load_registry()
    return [name for name, info in registry.methods.items() if info.origin.startswith("emda ")]


def train_row(name: str, precision: str, device: torch.device, repeats: int, steps: int) -> dict:
    """Seconds and FLOPs of one optimiser step of method ``name`` in ``precision``."""
    options = {"teacher": "emda:epfl"} if name == "selftrain" else {}
    method = resolve_method(name, options)
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=16, depth=4))
    heads = nn.ModuleDict(method.build_heads(model))
    method.initialise(model)
    model.to(device, memory_format=torch.channels_last).train()
    heads.to(device).train()
    params = [p for p in [*model.parameters(), *heads.parameters()] if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    dtype = dtype_of(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    shape = (PATCHES, 1, PATCH, PATCH)

    def data() -> torch.Tensor:
        return torch.rand(shape, device=device).contiguous(memory_format=torch.channels_last)

    source = Batch(data(), (torch.rand(shape, device=device) > 0.9).float())
    target = Batch(data(), guide=torch.rand(shape, device=device)) if method.uses_target else None

    def step() -> None:
        with autocast(device, dtype):
            terms = compute_terms(model, heads, method, source, target, 0.5, 100)
        loss = total_loss(terms, name)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    flops = counted_flops(step)

    def several() -> None:
        for _ in range(steps):
            step()

    seconds = timed(several, repeats, device) / steps
    return {"method": name, "precision": precision, "step_seconds": seconds,
            "images_per_s": PATCHES / seconds, "flop_per_step": flops,
            "flop_per_s": flops / seconds}  # fmt: skip


def sampling_seconds(repeats: int) -> float:
    """Seconds to draw one training batch of source patches (with labels) from EPFL."""
    folder = DATA / "train" if (DATA / "train" / "raw.tif").exists() else CROPS / "epfl_train"
    raw, labels = open_volume(folder / "raw.tif"), open_volume(folder / "labels.tif")
    raw = Volume(raw.read(slice(0, raw.shape[0])), str(raw.path), raw.voxel_size)
    labels = Volume(labels.read(slice(0, labels.shape[0])) > 0, str(labels.path))
    sampler = PatchSampler(raw, Normalization().fit(raw), PATCH, labels,
                           augmentation=Augmentation(True, 0.1, 0.0))  # fmt: skip
    rng = np.random.default_rng(0)
    return timed(lambda: sampler.sample(PATCHES, rng), repeats, torch.device("cpu"))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="training steps per round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--methods", default=None, help="comma-separated (default: built-ins)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.getLogger("emda").setLevel(logging.ERROR)  # the crop's assumed voxel size etc.
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precisions = [p for p in PRECISIONS if supported(p, device)]
    source = DATA / "test" / "raw.tif"
    source = source if source.exists() else CROPS / "epfl_test" / "raw.tif"
    raw = open_volume(source).read(slice(0, args.slices))
    result: dict = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else cpu_name(),
        "cpu_bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"}),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "emda_version": __version__,
        "volume": f"{source.relative_to(HERE.parent.parent)} z 0:{raw.shape[0]}",
        "shape": list(raw.shape),
        "peak": {},
        "predict": [],
        "train": [],
    }
    for p in precisions:
        result["peak"][p] = peaks(device, dtype_of(p) or torch.float32, args.repeats)
        print(f"peak {p}: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in result["peak"][p].items())
              + " GFLOP/s", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="emda-roofline-") as tmp:
        work = Path(tmp)
        write_volume(work / "volume.tif", raw)
        probs = {}
        for p in precisions:
            row = predict_row(work / "volume.tif", raw, p, device, args.repeats, work)
            probs[p] = row.pop("_prob").astype(int)
            row["of_peak"] = row["flop_per_s"] / result["peak"][p]["best"]
            result["predict"].append(row)
            speed, share = row["voxels_per_s"] / 1e3, row["of_peak"]
            print(f"predict {p}: {speed:.0f} kvoxel/s, {share:.0%} of peak", flush=True)
    for row in result["predict"][1:]:  # against float32: probabilities stored as round(255 p)
        reduced, full = probs[row["precision"]], probs["float32"]
        diff = np.abs(reduced - full)
        row["vs_float32"] = {
            "max_abs_of_255": int(diff.max()),
            "mean_abs_of_255": float(diff.mean()),
            "mask_disagreement": float(((reduced >= 128) != (full >= 128)).mean()),
        }
    methods = args.methods.split(",") if args.methods else method_names()
    for name in methods:
        for p in precisions:
            row = train_row(name, p, device, args.repeats, args.steps)
            row["of_peak"] = row["flop_per_s"] / result["peak"][p]["best"]
            result["train"].append(row)
            print(f"train {name} {p}: {row['images_per_s']:.1f} images/s, "
                  f"{row['of_peak']:.0%} of peak", flush=True)  # fmt: skip
    result["sampling_seconds_per_batch"] = sampling_seconds(args.repeats)
    first = {r["method"]: r for r in result["train"] if r["precision"] == "float32"}
    for row in result["train"]:
        row["speedup"] = first[row["method"]]["step_seconds"] / row["step_seconds"]
    for row in result["predict"]:
        row["speedup"] = result["predict"][0]["seconds"] / row["seconds"]
    out = args.out or HERE / "results" / f"roofline_{device.type}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
