"""Why does DANN not beat FT on the CPU profile? (diagnostic, nothing is chosen from it)

emda's training loop sends the source and the target batch through the network in two
forward passes, so in training each domain is normalised by its own batch-norm
statistics. This probe asks whether that hides the domain shift from DANN's domain
classifiers: it reads the domain-classifier loss (BCE; ln 2 = 0.693 is chance) of the
harness's EPFL -> VNC DANN run (CPU profile, seed 0, separate passes), then trains the
same DANN (same options, data, batch, patch, seed) for the first ``--iterations`` steps
with source and target in ONE forward pass (shared batch statistics) and reads the
same loss and the classifiers' accuracy. Early in training the reversal coefficient is
still near 0 (Ganin's ramp), so the classifiers are, in effect, trained alone: if they
separate the domains only with shared statistics, per-domain batch norm is what keeps
DANN's loss at chance.

The joint pass is patched in for this probe only (``emda.training.loop.compute_terms``); emda
itself trains with separate passes.

    python benchmarks/joint_bn_probe.py [--iterations 40]
      -> benchmarks/results/cpu/joint_bn_probe.json
"""

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path

import torch

import emda.training.loop
from emda.methods.base import TrainStep
from emda.model.unet import SegmentationOutput

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared/data"
SEPARATE_RUN = HERE / "work/cpu/358b0b0bb130/run/log.jsonl"  # harness key: DANN epfl2vnc seed 0
LAMBDAS = {2: 0.01, 3: 0.03, 4: 0.1}  # DANN's default weights per level
STOP_AFTER = 40


class StopProbe(Exception):
    """Raised at the first iteration past the probe's budget (the schedules, i.e. the
    learning rate and the reversal ramp, still follow the harness's 1500 iterations)."""


def joint_terms(model, heads, method, source, target, progress, iteration,
                seg_loss="bce_dice", metrics=None):  # fmt: skip
    """emda.training.loop.compute_terms with one forward pass for both domains."""
    if iteration >= STOP_AFTER:
        raise StopProbe
    n = source.x.shape[0]
    out = model.forward_features(torch.cat([source.x, target.x]))
    target_logits = out.logits[n:] if method.needs_target_logits else None
    step = TrainStep(
        model=model, heads=heads, source=source,
        source_out=SegmentationOutput(out.logits[:n], [f[:n] for f in out.features]),
        target=target, target_out=SegmentationOutput(target_logits, [f[n:] for f in out.features]),
        progress=progress, iteration=iteration, seg_loss=seg_loss,
        metrics={} if metrics is None else metrics,
    )  # fmt: skip
    return method.loss_terms(step)


def mean_of(block: list[dict]) -> dict:
    """Mean domain BCE per level (loss term / weight) and, where logged, accuracy."""
    entry = {
        f"bce{lv}": round(sum(r[f"dann{lv}"] for r in block) / len(block) / w, 3)
        for lv, w in LAMBDAS.items()
    }
    for lv in LAMBDAS:
        acc = [r["metrics"][f"domain_accuracy{lv}"] for r in block if "metrics" in r]
        if acc:
            entry[f"accuracy{lv}"] = round(sum(acc) / len(acc), 3)
    return entry


def blocks(rows: list[dict], size: int = 10) -> dict:
    return {
        f"{rows[i]['iteration']}-{rows[min(i + size, len(rows)) - 1]['iteration']}":
        mean_of(rows[i : i + size])
        for i in range(0, len(rows), size)
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    global STOP_AFTER
    STOP_AFTER = args.iterations
    if not SEPARATE_RUN.exists():
        sys.exit(f"error: {SEPARATE_RUN} missing: run paper_table.py for epfl2vnc dann first")
    separate = [json.loads(line) for line in SEPARATE_RUN.read_text().splitlines()]
    out_dir = HERE / "work/joint_bn_probe/dann_joint"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    emda.training.loop.compute_terms = joint_terms
    from emda.cli import app

    with contextlib.suppress(StopProbe):
        app(["adapt", "--source", f"{DATA}/epfl_lucchi_pp/train/raw.tif",
             "--source-labels", f"{DATA}/epfl_lucchi_pp/train/labels.tif",
             "--target", f"{DATA}/drosophila_vnc/raw.tif", "--target-z", "0:13",
             "--method", "dann", "--iterations", "1500", "--batch-size", "8",
             "--patch-size", "128", "--seed", "0", "--device", "cpu", "--threads", "1",
             "--no-target-bn", "--average-weights", "0",  # as the harness's row it compares with
             "--out", str(out_dir), "--quiet"])  # fmt: skip
    joint = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    result = {
        "what": "DANN EPFL -> VNC (CPU profile, seed 0): domain-classifier BCE (chance 0.693) "
        "and accuracy, per block of iterations",
        "separate_passes": blocks(separate[: args.iterations]),
        "separate_passes_last_100_iterations": mean_of(separate[-100:]),
        "joint_pass": blocks(joint),
    }
    target = HERE / "results/cpu/joint_bn_probe.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
