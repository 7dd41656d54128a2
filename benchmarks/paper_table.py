"""Regenerate Roels et al.'s table (IoU on the target test set) with emda's CLI.

    python benchmarks/paper_table.py run    --profile cpu [--directions ...] [--methods ...]
                                            [--seeds 0,1,2] [--semi 0.15]
    python benchmarks/paper_table.py report --profile cpu

Every run is keyed by a hash of its full configuration; its result lands in
``benchmarks/results/<profile>/runs/<key>.json`` and a rerun skips keys that
already have a result, so an interrupted benchmark picks up where it stopped.
Work files (checkpoints, predictions) go to ``benchmarks/work/<profile>/<key>/``.

Protocol (see benchmarks/README.md): no target-test label is used for any choice;
every method gets the same network, patch size, batch, iteration budget and
augmentation; the last checkpoint is scored (no selection) at threshold 0.5.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EMDA = [sys.executable, "-m", "emda"]

PROFILES = {
    # the bundled crops, a few steps: checks the harness itself in seconds
    "smoke": {
        "data": "crops",
        "iterations": 4,
        "batch_size": 2,
        "patch_size": 64,
        "base_channels": 4,
        "finetune_iterations": 2,
        "tile_size": 128,
    },
    # ~25 min per method on 2 CPU cores (FT: 1500 x 0.7 s)
    "cpu": {
        "data": "shared",
        "iterations": 1500,
        "batch_size": 8,
        "patch_size": 128,
        "base_channels": 16,
        "finetune_iterations": 500,
        "tile_size": 256,
    },
    # closer to the paper: larger patches, longer training
    "gpu": {
        "data": "shared",
        "iterations": 10000,
        "batch_size": 16,
        "patch_size": 256,
        "base_channels": 16,
        "finetune_iterations": 2000,
        "tile_size": 512,
    },
}

PAPER = {"ft": 28.70, "mmd": 44.96, "coral": 40.28, "dann": 49.90, "ynet": 49.55}
DA_ISC_VNC_TO_LUCCHI = 68.65  # the later anchor for VNC -> EPFL


@dataclass(frozen=True)
class Split:
    raw: str
    labels: str | None = None
    z: str | None = None


@dataclass(frozen=True)
class Direction:
    name: str
    source: Split  # labelled
    target_train: Split  # raw only for adaptation; its labels only for the semi rows
    target_test: Split


def directions(data_kind: str) -> dict[str, Direction]:
    if data_kind == "crops":
        d = REPO / "examples" / "data"
        epfl_tr = Split(f"{d}/epfl_train/raw.tif", f"{d}/epfl_train/labels.tif")
        epfl_te = Split(f"{d}/epfl_test/raw.tif", f"{d}/epfl_test/labels.tif")
        vnc, vnc_lab = f"{d}/vnc/raw.tif", f"{d}/vnc/labels.tif"
        vnc_tr, vnc_te = Split(vnc, vnc_lab, "0:8"), Split(vnc, vnc_lab, "8:12")
    else:
        d = REPO.parent / "shared" / "data"
        epfl_tr = Split(f"{d}/epfl_lucchi_pp/train/raw.tif", f"{d}/epfl_lucchi_pp/train/labels.tif")
        epfl_te = Split(f"{d}/epfl_lucchi_pp/test/raw.tif", f"{d}/epfl_lucchi_pp/test/labels.tif")
        vnc, vnc_lab = f"{d}/drosophila_vnc/raw.tif", f"{d}/drosophila_vnc/labels.tif"
        # the original Y-Net code's 0.67 split along z
        vnc_tr, vnc_te = Split(vnc, vnc_lab, "0:13"), Split(vnc, vnc_lab, "13:20")
    return {
        "epfl2vnc": Direction("epfl2vnc", epfl_tr, vnc_tr, vnc_te),
        "vnc2epfl": Direction("vnc2epfl", vnc_tr, epfl_tr, epfl_te),
    }


def config_key(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def emda(*args: str, log: Path) -> float:
    """Run one emda command, its output appended to ``log``; the wall time in seconds."""
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write("$ emda " + " ".join(args) + "\n")
        fh.flush()
        done = subprocess.run([*EMDA, *args], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"emda {args[0]} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - t0


def run_one(profile: str, direction: Direction, method: str, seed: int, semi: float | None) -> dict:
    p = PROFILES[profile]
    config = {
        "profile": profile,
        **p,
        "direction": asdict(direction),
        "method": method,
        "seed": seed,
        "semi_fraction": semi,
    }
    key = config_key(config)
    result_path = HERE / "results" / profile / "runs" / f"{key}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    # the adapted model is shared by the unsupervised and the semi-supervised rows
    adapted = HERE / "work" / profile / config_key({**config, "semi_fraction": None})
    work = adapted / (f"semi{semi}" if semi else "unsup")
    work.mkdir(parents=True, exist_ok=True)
    train = [
        "--iterations",
        str(p["iterations"]),
        "--batch-size",
        str(p["batch_size"]),
        "--patch-size",
        str(p["patch_size"]),
        "--seed",
        str(seed),
        "--quiet",
        "--overwrite",
    ]
    src, tr, te = direction.source, direction.target_train, direction.target_test
    times = {}
    log = adapted / "log.txt"
    model = adapted / "run"
    if not (model / "checkpoint.pt").exists() or (model / "state.pt").exists():
        adapt = [
            "adapt",
            "--source",
            src.raw,
            "--source-labels",
            src.labels,
            "--target",
            tr.raw,
            "--method",
            method,
            "--base-channels",
            str(p["base_channels"]),
            "--out",
            str(model),
            *train,
        ]
        adapt += ["--source-z", src.z] if src.z else []
        adapt += ["--target-z", tr.z] if tr.z else []
        times["adapt"] = emda(*adapt, log=log)
    if semi:
        ft = [
            "finetune",
            str(model),
            "--target",
            tr.raw,
            "--target-labels",
            tr.labels,
            "--fraction",
            str(semi),
            "--out",
            str(work / "run"),
            *train,
            "--iterations",
            str(p["finetune_iterations"]),
        ]
        ft += ["--target-z", tr.z] if tr.z else []
        times["finetune"] = emda(*ft, log=log)
        model = work / "run"
    times["predict"] = emda(
        "predict",
        str(model),
        te.raw,
        "--output",
        str(work / "prob.tif"),
        "--tile-size",
        str(p["tile_size"]),
        "--quiet",
        "--overwrite",
        log=log,
    )
    evaluate = [
        "evaluate",
        str(work / "prob.tif"),
        "--labels",
        te.labels,
        "--json",
        str(work / "scores.json"),
        "--overwrite",
    ]
    evaluate += ["--z-range", te.z] if te.z else []
    emda(*evaluate, log=log)
    (scores,) = json.loads((work / "scores.json").read_text())
    from emda import __version__

    result = {
        "key": key,
        "config": config,
        "scores": scores,
        "seconds": times,
        "emda_version": __version__,
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2))
    return result


def load_results(profile: str) -> list[dict]:
    return [
        json.loads(f.read_text())
        for f in sorted((HERE / "results" / profile / "runs").glob("*.json"))
    ]


def report(profile: str) -> str:
    """table.md (mean +- std IoU % over seeds) plus bars.png, fraction_curve.png and
    qualitative.png in ``benchmarks/results/<profile>/``."""
    import numpy as np

    results = load_results(profile)
    rows: dict[tuple, list[float]] = {}
    for r in results:
        c = r["config"]
        setting = f"semi {c['semi_fraction']:.0%}" if c["semi_fraction"] else "unsupervised"
        rows.setdefault((c["direction"]["name"], setting, c["method"]), []).append(
            100 * r["scores"]["iou"]
        )
    lines = [
        "| direction | setting | method | IoU % (mean +- std) | seeds | paper |",
        "|---|---|---|---|---|---|",
    ]
    for (direction, setting, method), values in sorted(rows.items()):
        paper = (
            PAPER.get(method, "") if direction == "epfl2vnc" and setting == "unsupervised" else ""
        )
        std = f" +- {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
        lines.append(
            f"| {direction} | {setting} | {method} | {np.mean(values):.1f}{std} | "
            f"{len(values)} | {paper} |"
        )
    lines.append(
        f"| vnc2epfl | unsupervised | DA-ISC (later anchor) | | | {DA_ISC_VNC_TO_LUCCHI} |"
    )
    table = "\n".join(lines) + "\n"
    out = HERE / "results" / profile
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    if results:
        _figures(results, rows, out)
    return table


def _figures(results: list[dict], rows: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # bars: unsupervised IoU per method and direction, the paper's next to EPFL -> VNC
    methods = sorted({m for (_, s, m) in rows if s == "unsupervised"})
    dirs = sorted({d for (d, s, _) in rows if s == "unsupervised"})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / (len(dirs) + 1)
    x = np.arange(len(methods))
    for i, d in enumerate(dirs):
        vals = [rows.get((d, "unsupervised", m), []) for m in methods]
        ax.bar(
            x + i * width,
            [np.mean(v) if v else 0 for v in vals],
            width,
            label=f"emda {d}",
            yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals],
        )
    ax.bar(
        x + len(dirs) * width,
        [PAPER.get(m, 0) for m in methods],
        width,
        label="paper (EPFL -> VNC)",
        color="grey",
    )
    ax.set_xticks(x + width * len(dirs) / 2, methods)
    ax.set_ylabel("target test IoU (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bars.png", dpi=100)
    plt.close(fig)

    # IoU against the fraction of target labels (the paper's Figure 3); 0 = unsupervised
    curves: dict[tuple, dict[float, list[float]]] = {}
    for r in results:
        c = r["config"]
        curves.setdefault((c["direction"]["name"], c["method"]), {}).setdefault(
            c["semi_fraction"] or 0.0, []
        ).append(100 * r["scores"]["iou"])
    if any(len(v) > 1 for v in curves.values()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for (d, m), by_fraction in sorted(curves.items()):
            fr = sorted(by_fraction)
            ax.plot(
                [100 * f for f in fr],
                [np.mean(by_fraction[f]) for f in fr],
                "o-",
                label=f"{m} ({d})",
            )
        ax.set_xlabel("target labels used (%)")
        ax.set_ylabel("target test IoU (%)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "fraction_curve.png", dpi=100)
        plt.close(fig)

    # qualitative: one target test slice, ground truth and each method's outline (seed 0)
    from emda.plots import overlay
    from emda.volume import open_volume

    for d in dirs:
        chosen = {
            r["config"]["method"]: r
            for r in results
            if r["config"]["direction"]["name"] == d
            and not r["config"]["semi_fraction"]
            and r["config"]["seed"] == 0
            and Path(r["scores"]["prediction"]).exists()
        }
        if not chosen:
            continue
        test = next(iter(chosen.values()))["config"]["direction"]["target_test"]
        start = int(test["z"].split(":")[0]) if test["z"] else 0
        z = start + 2
        preds = {
            f"{m} (IoU {100 * r['scores']['iou']:.1f})": open_volume(
                r["scores"]["prediction"]
            ).read(z)
            >= 128
            for m, r in sorted(chosen.items())
        }
        overlay(
            open_volume(test["raw"]).read(z),
            open_volume(test["labels"]).read(z),
            preds,
            out / f"qualitative_{d}.png",
            title=f"{d}: target test slice z={z}",
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--directions", default="epfl2vnc,vnc2epfl")
    parser.add_argument("--methods", default="ft,mmd,coral,dann,ynet")
    parser.add_argument("--seeds", default="0")
    parser.add_argument(
        "--semi",
        default="",
        help="also finetune on these fractions of target labels (e.g. 0.15 or 0.05,0.15,0.5,1)",
    )
    args = parser.parse_args()
    if args.action == "run":
        dirs = directions(PROFILES[args.profile]["data"])
        for name in args.directions.split(","):
            for method in args.methods.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    fractions = [float(f) for f in args.semi.split(",") if f]
                    for semi in [None, *fractions]:
                        r = run_one(args.profile, dirs[name], method, seed, semi)
                        print(
                            f"{name} {method} seed {seed} semi {semi}: "
                            f"IoU {r['scores']['iou']:.4f}",
                            flush=True,
                        )
    print(report(args.profile))


if __name__ == "__main__":
    main()
