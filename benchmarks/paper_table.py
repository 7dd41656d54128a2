"""Regenerate Roels et al.'s table (IoU on the target test set) with emda's CLI.

    python benchmarks/paper_table.py run    --profile cpu [--directions ...] [--methods ...]
                                            [--seeds 0,1,2] [--semi 0.15] [--opt NAME=VALUE]
                                            [--augment NAME=VALUE] [--tta]
                                            [--ensemble]
    python benchmarks/paper_table.py report --profile cpu
    python benchmarks/paper_table.py adopt  --profile cpu --directions D --methods M --seeds S RUN

Every run is keyed by a hash of its full configuration; its result lands in
``benchmarks/results/<profile>/runs/<key>.json`` and a rerun skips keys that
already have a result, so an interrupted benchmark picks up where it stopped.
Work files (checkpoints, predictions) go to ``benchmarks/work/<profile>/<key>/``.

Protocol (benchmarks/README.md): no target-test label is used for any choice;
every method gets the same network, patch size, batch, iteration budget and
augmentation; the last checkpoint is scored (no selection) at threshold 0.5.

The harness itself is the package ``benchmarks/harness/``; this file is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the harness package beside it
from harness.adopt import adopt
from harness.config import PROFILES, directions
from harness.report import report
from harness.running import ensemble_row, run_one


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["run", "report", "adopt"])
    parser.add_argument("runs", nargs="*", type=Path, help="adopt: finished adapt run dir(s)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--directions", default="epfl2vnc,vnc2epfl")
    parser.add_argument("--methods", default="ft,mmd,coral,dann,ynet,meanteacher,selftrain")
    parser.add_argument("--seeds", default="0")
    parser.add_argument(
        "--semi",
        default="",
        help="also finetune on these fractions of target labels (e.g. 0.15 or 0.05,0.15,0.5,1)",
    )
    parser.add_argument(
        "--planes",
        choices=["xy", "ortho", "auto"],
        default="xy",
        help="run: `emda predict --planes` for the scored predictions (the models are shared)",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="run: `emda predict --tta` for the scored predictions (the models are shared)",
    )
    parser.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run/adopt: a method option (`emda adapt --opt`); rows that differ from the "
        "defaults get their own keys and table rows",
    )
    parser.add_argument(
        "--augment",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run: training augmentation other than emda adapt's default (intensity_jitter, "
        "noise, amplitude_mix); such rows get their own keys and "
        "table rows",
    )
    parser.add_argument(
        "--target-planes",
        choices=["xy", "ortho"],
        default="xy",
        help="run: `emda adapt --target-planes` for the rows' training (not a teacher's); "
        "its own keys and table rows",
    )
    parser.add_argument(
        "--average-weights",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="run: `emda adapt --average-weights` for the rows' training (not a teacher's); "
        "its own keys and table rows",
    )
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="run: `--precision` of every command of the rows (default: what the profile's "
        "rows ran in, float32; float16 for gpu); its own keys and table rows",
    )
    parser.add_argument(
        "--predict-precision",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="run: `emda predict --precision` for the scored predictions alone (the models "
        "are shared)",
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="run: also score the mean of the --seeds rows' probability maps (emda "
        "ensemble), a row of its own",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="run: skip the report (for several runs side by side)",
    )
    args = parser.parse_intermixed_args()
    if not 0 <= args.average_weights <= 1:  # before any work directory is made
        sys.exit(f"error: --average-weights {args.average_weights}: must be in [0, 1]")
    if args.action == "adopt":  # one direction, method and seed
        (name,), (method,) = args.directions.split(","), args.methods.split(",")
        for run in args.runs:
            dest = adopt(args.profile, directions(PROFILES[args.profile]["data"])[name], method,
                         int(args.seeds), run, args.opt)  # fmt: skip
            print(f"adopted {run} as {dest}")
        return
    if args.action == "run":
        dirs = directions(PROFILES[args.profile]["data"])
        for name in args.directions.split(","):
            for method in args.methods.split(","):
                if name == "epfl2epfl" and method != "ft":
                    continue  # the in-domain check is the source-only model's
                finished: dict[float | None, list[dict]] = {}
                for seed in (int(s) for s in args.seeds.split(",")):
                    fractions = [float(f) for f in args.semi.split(",") if f]
                    fractions = [] if name == "epfl2epfl" else fractions
                    for semi in [None, *fractions]:
                        r = run_one(args.profile, dirs[name], method, seed, semi,
                                    args.planes, args.opt, args.tta, args.augment,
                                    args.target_planes, args.average_weights,
                                    args.precision, args.predict_precision)  # fmt: skip
                        finished.setdefault(semi, []).append(r)
                        print(
                            f"{name} {method} seed {seed} semi {semi}: "
                            f"IoU {r['scores']['iou']:.4f}",
                            flush=True,
                        )
                for semi, members in finished.items() if args.ensemble else ():
                    r = ensemble_row(members)
                    print(f"{name} {method} ensemble of seeds {args.seeds} semi {semi}: "
                          f"IoU {r['scores']['iou']:.4f}", flush=True)  # fmt: skip
        if args.no_report:
            return
    print(report(args.profile))


if __name__ == "__main__":
    main()
