"""Weight averaging against the last weights of the very same training run: one harness
row trained with ``--average-weights``, and the last iteration's own weights from that
run scored beside it (benchmarks/README.md, stop 32).

A rerun of a row with no setting changed can move 3-4 IoU points on another machine or
thread count, so an averaged row is only comparable with a plain row that followed the
same trajectory. Where no plain row's training log is at hand to prove that, this trains
the averaged row once (the harness's own command, ``paper_table.run_one``) and keeps the
weights the averaging started from, the last iteration's: training with and without
averaging follows one trajectory and differs only in the weights saved at the end. Both
are scored on the target test set as trained and with target batch-norm statistics.

    python benchmarks/average_pair_probe.py --method mmd --seed 0
    # -> results/cpu/average_pair/mmd_seed0.json (and the averaged row in results/cpu/runs)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

import paper_table
import torch
from paper_table import PROFILES, _adapted_dir, directions, emda, row_config, row_options

from emda.model.checkpoint import atomic_torch_save, load_raw
from emda.training.averaging import WeightAverage

FRACTION = 0.5
LAST = "last_weights.pt"  # in the row's work directory


def adapt_keeping_last_weights(last: Path):
    """A stand-in for ``paper_table.emda`` that runs ``emda adapt`` in this process, with
    the averaging's last call also writing the model's own weights to ``last``."""
    original = WeightAverage.weights

    def weights(self, like):
        atomic_torch_save({k: v.detach().cpu().clone() for k, v in like.items()}, last)
        return original(self, like)

    def run(*args: str, log: Path) -> float:
        if args[0] != "adapt":
            return emda(*args, log=log)
        from emda.cli import app

        WeightAverage.weights = weights
        t0 = time.perf_counter()
        try:  # in the repository, as the harness's emda calls run: its paths are relative
            with contextlib.chdir(paper_table.REPO):
                app(list(args), prog_name="emda")
        except SystemExit as exc:
            if exc.code:
                sys.exit(f"emda adapt failed (exit {exc.code})")
        finally:
            WeightAverage.weights = original
        return time.perf_counter() - t0

    return run


def last_weights_run(trained: Path, last: Path, out: Path) -> None:
    """A copy of the averaged run whose weights are the last iteration's own."""
    raw = load_raw(trained)
    raw["state_dict"] = torch.load(last, weights_only=True)
    raw["training"] = {**raw["training"], "average_weights": 0.0}
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(trained / "config.toml", out / "config.toml")
    atomic_torch_save(raw, out / "checkpoint.pt")


def score(model: Path, direction: paper_table.Direction, profile: str, log: Path) -> dict:
    tile_size = PROFILES[profile]["tile_size"]
    result, _, _ = paper_table.predict_and_score(model, direction.target_test, tile_size, log)
    return {k: result[k] for k in ("iou", "precision", "recall")}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--direction", default="epfl2vnc")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="cpu", choices=("cpu", "smoke"))
    args = parser.parse_args(argv)
    direction = directions("crops" if args.profile == "smoke" else "shared")[args.direction]
    options = row_options(args.method, [])
    config = row_config(args.profile, direction, args.method, args.seed, None, "xy", options,
                        average_weights=FRACTION)  # fmt: skip
    work = _adapted_dir(config)
    work.mkdir(parents=True, exist_ok=True)
    last = work / LAST
    # an unfinished run may resume here: the last weights are taken when it ends
    if paper_table._finished(work / "run") and not last.exists():
        sys.exit(f"error: {work / 'run'} was trained without this probe; no last weights")
    paper_table.emda = adapt_keeping_last_weights(last)
    row = paper_table.run_one(args.profile, direction, args.method, args.seed, None,
                              average_weights=FRACTION)  # fmt: skip
    paper_table.emda = emda
    plain = work / "last"
    last_weights_run(work / "run", last, plain)
    tr, log = direction.target_train, work / "log.txt"
    emda("recalibrate", str(plain), "--target", tr.raw, *(["--target-z", tr.z] if tr.z else []),
         "--out", str(work / "last_target_bn"), "--overwrite", log=log)  # fmt: skip
    pick = ("iou", "precision", "recall")
    result = {
        "what": __doc__.split("\n\n")[0].strip(),
        "rerun": f"python benchmarks/{Path(__file__).name} --method {args.method} "
        f"--direction {args.direction} --seed {args.seed} --profile {args.profile}",
        "method": args.method,
        "direction": args.direction,
        "seed": args.seed,
        "row": row["key"],
        "averaged": {
            "as_trained": {k: row["scores_as_trained"][k] for k in pick},
            "target_bn": {k: row["scores"][k] for k in pick},
        },
        "last": {
            "as_trained": score(plain, direction, args.profile, log),
            "target_bn": score(work / "last_target_bn", direction, args.profile, log),
        },
        "trained_with": row.get("trained_with"),
        "seconds_adapt": row["seconds"].get("adapt"),
    }
    for field in ("as_trained", "target_bn"):
        gain = result["averaged"][field]["iou"] - result["last"][field]["iou"]
        result.setdefault("gain_iou_points", {})[field] = round(100 * gain, 2)
    out = paper_table.HERE / "results" / args.profile / "average_pair"
    out = out / f"{args.method}_seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}: {json.dumps(result['gain_iou_points'])}")
    return out


if __name__ == "__main__":
    main()
