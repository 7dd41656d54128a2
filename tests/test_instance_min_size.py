"""`emda evaluate --instances --min-size`: specks are dropped before matching."""

import json

import numpy as np
import tifffile
from typer.testing import CliRunner

from emda.cli import app


def test_specks_under_the_minimum_size_are_not_counted(tmp_path):
    truth = np.zeros((2, 30, 30), np.uint8)
    truth[:, 5:15, 5:15] = 1
    pred = truth.astype(np.float32) * 0.9
    pred[:, 25, 25] = pred[:, 2, 27] = 0.8  # two specks of 2 voxels
    for name, data in (("t.tif", truth), ("p.tif", pred)):
        tifffile.imwrite(tmp_path / name, data, photometric="minisblack")
    scores = {}
    for size in (None, 100.0):  # 2 voxels of 1 nm^3 (no voxel size: --voxel-size needed)
        out = tmp_path / f"e{size}.json"
        args = ["evaluate", str(tmp_path / "p.tif"), "--labels", str(tmp_path / "t.tif"),
                "--instances", "--json", str(out)]  # fmt: skip
        if size:
            args += ["--min-size", str(size)]
        result = CliRunner().invoke(app, args)
        if size:  # the prediction has no voxel size: said in one line
            assert result.exit_code == 1 and "has no voxel size" in result.output
            tifffile.imwrite(tmp_path / "p.tif", pred, imagej=True, resolution=(1, 1),
                             metadata={"spacing": 1.0, "unit": "nm"})  # fmt: skip
            result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        scores[size] = json.loads(out.read_text())[0]["instances"]
    assert scores[None]["predicted"] == 3 and scores[100.0]["predicted"] == 1
    assert scores[100.0]["f1_50"] == 1.0
