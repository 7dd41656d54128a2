"""`emda evaluate --instances --min-size`: specks are dropped before matching."""

import json

import numpy as np
import tifffile
import zarr
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


def test_the_source_sets_the_minimum_size_without_any_target_label(tmp_path):
    """adapt records the source's objects; predict passes the record on; instances drops
    objects under a tenth of the median source object, and says so."""
    from emda.analysis.source_objects import MIN_SIZE_FRACTION, source_objects
    from emda.io.volume import open_volume, read_labels
    from emda.model.checkpoint import load_checkpoint

    from .conftest import CROPS, adapt_on_crops

    run = tmp_path / "run"
    assert adapt_on_crops(run, target=None).exit_code == 0
    record = load_checkpoint(run).training["source_objects"]
    raw = open_volume(CROPS / "epfl_train/raw.tif")
    labels = read_labels(CROPS / "epfl_train/labels.tif")
    assert record == source_objects([(raw, labels, list(range(raw.shape[0])))])
    smallest = MIN_SIZE_FRACTION * record["median_nm3"]
    pred = tmp_path / "p.zarr"
    assert CliRunner().invoke(app, ["predict", str(run), str(CROPS / "vnc/raw.tif"), "-o",
                                    str(pred), "--quiet"]).exit_code == 0  # fmt: skip
    assert dict(zarr.open_array(str(pred), mode="r").attrs)["emda_source_objects"] == record
    # a prediction with one object above the minimum and specks below it
    voxel = (50.0, 4.6, 4.6)
    side = int(np.ceil((smallest / np.prod(voxel)) ** 0.5)) + 2  # one slice of it is enough
    data = np.zeros((2, 64, 64), np.float32)
    data[0, :side, :side] = 0.9
    data[1, 60:62, 60:62] = data[0, 40, 40] = 0.9
    synthetic = tmp_path / "s.zarr"
    array = zarr.create_array(str(synthetic), data=data)
    array.attrs.update({"emda_source_objects": record, "voxel_size": list(voxel)})
    counts = {}
    for name, extra in (("auto", []), ("all", ["--all-objects"]),
                        ("given", ["--min-size", str(smallest)])):  # fmt: skip
        out = tmp_path / f"{name}.zarr"
        result = CliRunner().invoke(app, ["instances", str(synthetic), "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        counts[name] = int(open_volume(out).read().max())
        if name == "auto":
            assert "10% of the median source object" in " ".join(result.output.split())
    assert counts == {"auto": 1, "given": 1, "all": 3}
    tif = tmp_path / "s.tif"  # a TIFF keeps no record: --run gives it
    tifffile.imwrite(tif, data, imagej=True, resolution=(1 / 4.6, 1 / 4.6),
                     metadata={"spacing": 50.0, "unit": "nm"})  # fmt: skip
    bare = CliRunner().invoke(app, ["instances", str(tif), "-o", str(tmp_path / "b.zarr")])
    assert "no record of the source's objects" in " ".join(bare.output.split())
    assert int(open_volume(tmp_path / "b.zarr").read().max()) == 3
    with_run = CliRunner().invoke(app, ["instances", str(tif), "-o", str(tmp_path / "r.zarr"),
                                        "--run", str(run)])  # fmt: skip
    assert with_run.exit_code == 0
    assert int(open_volume(tmp_path / "r.zarr").read().max()) == 1
