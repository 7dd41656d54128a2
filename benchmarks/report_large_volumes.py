"""The large-volume benchmarks in one table and one figure.

    python benchmarks/report_large_volumes.py

Reads results/predict_throughput.json, results/predict_memory.json,
results/dask_scaling.json and results/gpu/throughput.json (whichever exist) and writes
results/large_volumes.md and results/large_volumes.png.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    tp, mem = _load("predict_throughput.json"), _load("predict_memory.json")
    dask, gpu = _load("dask_scaling.json"), _load("gpu/throughput.json")
    lines = ["# Large volumes: measured", ""]
    if tp:
        v = tp["voxels_per_s"]
        lines += [
            f"Throughput, CPU ({tp['threads']} threads), {tp['volume']} "
            f"({' x '.join(map(str, tp['shape']))}), tiles {tp['tile']}^2, overlap "
            f"{tp['overlap']}, Gaussian blending, batch {tp['batch']}; fastest of "
            f"{len(tp['seconds']['emda'])} alternating rounds:",
            "",
            "| predictor | voxels/s | vs MONAI | vs bare forward passes |",
            "|---|---|---|---|",
            f"| emda predict, float32 | {v['emda']:,} | {tp['emda_vs_monai_speedup']:.2f}x | "
            f"{tp['emda_vs_forward_overhead']:.2f} (time ratio) |",
            *(
                [
                    f"| emda predict, bfloat16 (auto on this CPU) | {v['emda_bfloat16']:,} | "
                    f"{tp['emda_bfloat16_vs_monai_speedup']:.2f}x | |"
                ]
                if "emda_bfloat16" in v
                else []
            ),
            f"| MONAI {tp['monai_version']} sliding_window_inference | {v['monai']:,} | 1.00x | "
            f"{tp['monai_vs_forward_overhead']:.2f} (time ratio) |",
            f"| bare forward passes | {v['forward']:,} | | 1.00 |",
            "",
            f"Outputs of emda (float32) and MONAI differ by {tp['outputs_mean_abs_diff_of_255']} "
            "/ 255 on average.",
            "",
        ]
    if mem:
        lines += ["Peak resident memory of the `emda predict` process (`/usr/bin/time -v`):", "",
                  "| volume (z, y, x) | network | tile | peak RSS | time |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for r in mem["runs"]:
            size = " x ".join(map(str, r["volume"])) + (f" ({r['gib']} GiB)" if "gib" in r else "")
            lines.append(f"| {size} | {r['network']} | {r['tile']} | {r['peak_rss_mb']} MB | "
                         f"{r['seconds']} s |")  # fmt: skip
        lines.append("")
    if dask:
        lines += [f"Dask, {dask['volume']} on this 2-core machine (cluster start-up included):",
                  "", "| setting | seconds | voxels/s | output identical |",
                  "|---|---|---|---|"]  # fmt: skip
        same = dask["output_identical_to_1_process_1_thread"]
        for r in dask["runs"]:
            lines.append(f"| {r['setting']} | {r['seconds']} | {r['voxels_per_s']:,} | "
                         f"{same[r['setting']]} |")  # fmt: skip
        lines.append("")
    if gpu:
        lines += [f"GPU: {gpu['card']} (torch {gpu['torch']}, CUDA {gpu['cuda']}), "
                  f"{gpu['network']}:", "", "| work | float16 autocast | float32 |",
                  "|---|---|---|"]  # fmt: skip
        for method in ("ft", "ynet"):
            by = {r["amp"]: r["images_per_s"] for r in gpu["train"] if r["method"] == method}
            lines.append(f"| training {method}, batch 16 x 256^2 (images/s) | {by[True]:,} | "
                         f"{by[False]:,} |")  # fmt: skip
        by = {r["amp"]: r["voxels_per_s"] for r in gpu["predict"]}
        lines.append(f"| prediction, 512^2 tiles (voxels/s) | {by[True]:,} | {by[False]:,} |")
        lines.append("")
    (RESULTS / "large_volumes.md").write_text("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if tp:
        names = ["emda", "monai", "forward"]
        axes[0].bar(["emda", "MONAI", "bare forward"], [tp["voxels_per_s"][n] / 1e3 for n in names],
                    color=["tab:blue", "tab:orange", "tab:gray"])  # fmt: skip
        axes[0].set_ylabel("thousand voxels / s (CPU, 2 threads)")
        axes[0].set_title("sliding-window prediction")
    if mem:
        labels = [" x ".join(map(str, r["volume"])) for r in mem["runs"]]
        axes[1].bar(labels, [r["peak_rss_mb"] for r in mem["runs"]], color="tab:blue")
        axes[1].axhline(1536, color="tab:red", ls="--", label="goal 1.5 GB")
        axes[1].set_ylabel("peak RSS (MB)")
        axes[1].set_title("memory vs volume size")
        axes[1].legend()
        axes[1].tick_params(axis="x", labelsize=8)
    if dask:
        axes[2].bar([r["setting"].replace(", ", "\n") for r in dask["runs"]],
                    [r["voxels_per_s"] / 1e3 for r in dask["runs"]], color="tab:green")  # fmt: skip
        axes[2].set_ylabel("thousand voxels / s")
        axes[2].set_title("Dask on 2 cores")
        axes[2].tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "large_volumes.png", dpi=100)
    print((RESULTS / "large_volumes.md").read_text())


if __name__ == "__main__":
    main()
