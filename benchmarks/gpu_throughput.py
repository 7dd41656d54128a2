"""Training images/s and prediction voxels/s on one GPU, with and without mixed precision.

    python benchmarks/gpu_throughput.py [--out benchmarks/results/gpu/throughput.json]

Training: emda's own step (``compute_terms`` + ``total_loss``, Adam, GradScaler under
AMP) for the supervised method (FT) and Y-Net on random 256^2 patches already on the GPU,
so the numbers are the network's, not the patch sampler's. Prediction: emda's
``SlidingWindowPredictor`` (512^2 tiles, overlap 0.25, Gaussian blending, batch 8) on
random 2048^2 slices, including the host <-> GPU copies of each slice. Every figure is
the median of ``--repeats`` timed rounds after a warm-up, timed with CUDA synchronised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emda import __version__
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.methods.base import Batch
from emda.model import UNet, UNetConfig
from emda.training.adapt import resolve_method
from emda.training.loop import compute_terms, total_loss


def _timed(fn, rounds: int, repeats: int) -> float:
    """Median seconds of ``rounds`` calls of ``fn``, over ``repeats`` after one warm-up."""
    for _ in range(max(3, rounds // 4)):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_images_per_s(method_name: str, amp: bool, batch: int, patch: int, repeats: int) -> float:
    dev = torch.device("cuda")
    method = resolve_method(method_name, {})
    model = UNet(UNetConfig(base_channels=16, depth=4)).to(dev, memory_format=torch.channels_last)
    heads = nn.ModuleDict(method.build_heads(model)).to(dev)
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    cast = torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext()
    shape = (batch, 1, patch, patch)

    def data():
        return torch.rand(shape, device=dev).contiguous(memory_format=torch.channels_last)

    source = Batch(data(), (torch.rand(shape, device=dev) > 0.9).float())
    target = Batch(data()) if method.uses_target else None

    def step():
        with cast:
            terms = compute_terms(model, heads, method, source, target, 0.5, 100)
            loss = total_loss(terms, method.name)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    rounds = 20
    seconds = _timed(step, rounds, repeats)
    return rounds * batch / seconds  # source images per second (Y-Net also sees a target batch)


def predict_voxels_per_s(amp: bool, size: int, slices: int, repeats: int) -> float:
    model = UNet(UNetConfig(base_channels=16, depth=4))
    predictor = SlidingWindowPredictor(
        model,
        torch.device("cuda"),
        tile_size=512,
        overlap=0.25,
        batch_size=8,
        precision=torch.float16 if amp else None,
    )
    images = np.random.default_rng(0).random((slices, size, size), dtype=np.float32)

    def one_volume():
        for image in images:
            predictor.predict_slice(image)

    seconds = _timed(one_volume, 1, repeats)
    return images.size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu/throughput.json"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_throughput.py: no CUDA GPU here")
    torch.backends.cudnn.benchmark = True
    result: dict = {
        "card": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "emda_version": __version__,
        "network": "U-Net, base 16 channels, depth 4",
        "train": [],
        "predict": [],
    }
    for method in ("ft", "ynet"):
        for amp in (False, True):
            ips = train_images_per_s(method, amp, batch=16, patch=256, repeats=args.repeats)
            result["train"].append({"method": method, "amp": amp, "batch": 16, "patch": 256,
                                    "images_per_s": round(ips, 1)})  # fmt: skip
            print(f"train {method:5s} amp={amp!s:5s} {ips:8.1f} images/s", flush=True)
    for amp in (False, True):
        vps = predict_voxels_per_s(amp, size=2048, slices=8, repeats=args.repeats)
        result["predict"].append({"amp": amp, "tile": 512, "overlap": 0.25, "batch": 8,
                                  "voxels_per_s": round(vps)})  # fmt: skip
        print(f"predict amp={amp!s:5s} {vps / 1e6:8.1f} Mvoxels/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
