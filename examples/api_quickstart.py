"""emda from Python: adapt EPFL -> Drosophila VNC on the bundled crops, predict, score.

    python examples/api_quickstart.py --out api-demo [--iterations 200]

The same three calls work on your own volumes: give ``VolumeSpec`` your paths.
"""

import argparse
from pathlib import Path

import emda
from emda.demo import default_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("api-demo"))
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    crops = default_data_dir()  # the crops installed with emda
    args.out.mkdir(parents=True, exist_ok=True)

    run = emda.adapt(
        emda.VolumeSpec(
            str(crops / "epfl_train/raw.tif"), labels=str(crops / "epfl_train/labels.tif")
        ),
        emda.VolumeSpec(str(crops / "vnc/raw.tif")),
        args.out / "run",
        method="ynet",
        config=emda.TrainConfig(iterations=args.iterations, batch_size=4),
        overwrite=True,
    )
    print(f"trained {run.iterations} iterations in {run.seconds:.0f} s: {run.run_dir}")

    prediction = str(args.out / "vnc_prob.tif")
    result = emda.predict(
        run.run_dir, str(crops / "vnc/raw.tif"), output=prediction, overwrite=True
    )
    print(f"predicted {result.shape} at {result.voxels_per_second / 1e6:.2f} Mvoxel/s")

    [scores] = emda.evaluate([prediction], str(crops / "vnc/labels.tif"))
    print(
        "IoU {iou:.3f}  Dice {dice:.3f}  precision {precision:.3f}  recall {recall:.3f}".format(
            **scores.total.scores()
        )
    )


if __name__ == "__main__":
    main()
