"""How much choosing a checkpoint on the target test set would add (a diagnostic that
sets nothing; benchmarks/README.md, stop 30).

The original Y-Net code kept the checkpoint with the lowest loss on the target test
set; emda's protocol scores the last one. This retrains one harness row (its own work
directory, the harness's exact command), keeps a copy of every intermediate checkpoint
(`emda adapt` saves one every 250 iterations), and scores each copy on the target test
set as trained and with target batch-norm statistics: IoU at 0.5 and the mean binary
cross-entropy against the test labels (the original code's selection criterion). It
reports the last checkpoint, the one with the lowest test loss and the one with the
best test IoU (an upper bound for any selection rule).

    python benchmarks/checkpoint_selection_probe.py --method dann --seed 0
    # -> results/cpu/checkpoint_selection/dann_seed0.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import tifffile
from paper_table import (
    HERE,
    PROFILES,
    REPO,
    _adapted_dir,
    adapted_models,
    directions,
    emda,
    predict_and_score,
    row_config,
    row_options,
)

from emda.model.checkpoint import load_raw

PROFILE = "cpu"
RUN_FILES = ("config.toml", "checkpoint.pt")  # what recalibrate and predict read


def keep_snapshots(run: Path, into: Path, stop: threading.Event) -> None:
    """Copy checkpoint.pt each time training replaces it (it is written atomically), named
    by the iteration the copy itself records."""
    seen = None
    while not stop.wait(2.0):
        checkpoint = run / "checkpoint.pt"
        if not checkpoint.exists() or checkpoint.stat().st_mtime_ns == seen:
            continue
        seen = checkpoint.stat().st_mtime_ns
        incoming = into / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            shutil.copy2(run / name, incoming / name)
        snapshot = into / f"it{load_raw(incoming / 'checkpoint.pt')['iteration']:05d}"
        shutil.rmtree(snapshot, ignore_errors=True)
        incoming.rename(snapshot)


def test_loss(prob: Path, labels: Path, z: slice) -> float:
    """Mean binary cross-entropy of a stored uint8 probability map against the labels."""
    p = tifffile.imread(prob)[z].astype(np.float64) / 255.0
    p = np.clip(p, 0.5 / 255, 1 - 0.5 / 255)  # round(255 p) hides anything closer to 0 or 1
    y = tifffile.imread(labels)[z] > 0
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def score(model: Path, direction, log: Path) -> dict:
    te = direction.target_test
    tile_size = PROFILES[PROFILE]["tile_size"]
    result, prob, _ = predict_and_score(model, te, tile_size, log)
    start, stop = (int(v) for v in te.z.split(":")) if te.z else (None, None)
    pick = {k: result[k] for k in ("iou", "precision", "recall")}
    return {**pick, "test_bce": test_loss(prob, REPO / te.labels, slice(start, stop))}


def choices(rows: dict[int, dict], field: str) -> dict:
    last = max(rows)
    lowest_loss = min(rows, key=lambda it: rows[it][field]["test_bce"])
    best_iou = max(rows, key=lambda it: rows[it][field]["iou"])
    return {
        name: {"iteration": it, **rows[it][field]}
        for name, it in (
            ("last", last),
            ("lowest_test_loss", lowest_loss),
            ("best_test_iou", best_iou),
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="dann")
    parser.add_argument("--direction", default="epfl2vnc")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    direction = directions("shared")[args.direction]
    options = row_options(args.method, [])
    config = row_config(PROFILE, direction, args.method, args.seed, None, "xy", options)
    snapshots = _adapted_dir(config) / "snapshots"
    stop = threading.Event()
    watcher = threading.Thread(
        target=keep_snapshots, args=(_adapted_dir(config) / "run", snapshots, stop)
    )
    watcher.start()
    try:
        trained, _ = adapted_models(config, direction, options, {})
    finally:
        stop.set()
        watcher.join()
    final = snapshots / "it01500"  # the last checkpoint, written after the last save
    final.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        shutil.copy2(trained / name, final / name)
    tr = direction.target_train
    rows = {}
    for snapshot in sorted(p for p in snapshots.iterdir() if p.name.startswith("it")):
        log = snapshot.parent / "log.txt"
        recalibrated = snapshot.parent / f"{snapshot.name}_target_bn"
        emda("recalibrate", str(snapshot), "--target", tr.raw,
             *(["--target-z", tr.z] if tr.z else []), "--out", str(recalibrated),
             "--overwrite", log=log)  # fmt: skip
        rows[int(snapshot.name[2:])] = {
            "as_trained": score(snapshot, direction, log),
            "target_bn": score(recalibrated, direction, log),
        }
        print(snapshot.name, json.dumps(rows[int(snapshot.name[2:])]), flush=True)
    result = {
        "what": __doc__.split("\n\n")[0].strip(),
        "rerun": f"python benchmarks/{Path(__file__).name} --method {args.method} "
        f"--seed {args.seed}",
        "method": args.method,
        "direction": args.direction,
        "seed": args.seed,
        "config": config,
        "checkpoints": rows,
        "as_trained": choices(rows, "as_trained"),
        "target_bn": choices(rows, "target_bn"),
    }
    out = (
        HERE / "results" / PROFILE / "checkpoint_selection" / f"{args.method}_seed{args.seed}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
