"""Cut the bundled crops from the full data sets in ../shared/data (run from the repo root).

python examples/make_demo_crops.py [--shared ../shared/data]
"""

import argparse
from pathlib import Path

import tifffile

CROPS = {
    # name: (source folder, z, y, x slices)
    "epfl_train": ("epfl_lucchi_pp/train", slice(48, 64), slice(128, 512), slice(512, 896)),
    "epfl_test": ("epfl_lucchi_pp/test", slice(80, 88), slice(0, 320), slice(512, 832)),
    "vnc": ("drosophila_vnc", slice(8, 20), slice(576, 896), slice(320, 640)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parents[1] / "emda" / "demo_data"
    )
    args = parser.parse_args()
    for name, (folder, *window) in CROPS.items():
        for kind in ("raw", "labels"):
            src = args.shared / folder / f"{kind}.tif"
            with tifffile.TiffFile(src) as tif:
                data = tif.asarray()[tuple(window)]
                ij = tif.imagej_metadata or {}
                res = tif.pages[0].tags["XResolution"].value
            dest = args.out / name / f"{kind}.tif"
            dest.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(
                dest,
                data,
                imagej=True,
                resolution=(res[0] / res[1], res[0] / res[1]),
                metadata={
                    "axes": "ZYX",
                    "spacing": ij.get("spacing", 1.0),
                    "unit": ij.get("unit", "nm"),
                },
                compression="zlib",
                predictor=kind == "raw",
            )
            print(dest, data.shape, dest.stat().st_size)


if __name__ == "__main__":
    main()
