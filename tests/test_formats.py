"""Reading the layouts other tools write: NGFF units and time/channel axes, OME-TIFF
physical sizes. Files are written with the format's own library (zarr with NGFF
metadata, tifffile's OME writer)."""

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from emda.cli import app
from emda.errors import EmdaError
from emda.io.volume import open_volume

runner = CliRunner()


def _ngff(path, data, axes, scale):
    """An NGFF 0.5 image with one level, as bioformats2raw-style writers lay it out."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("0", data=data, chunks=data.shape)
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": scale}]}],
    }]}  # fmt: skip
    return path


def _axis(name, kind, unit=None):
    return {"name": name, "type": kind, **({"unit": unit} if unit else {})}


SPACE_UM = [_axis(a, "space", "micrometer") for a in "zyx"]


@pytest.mark.parametrize("unit, factor", [
    ("angstrom", 0.1), ("nanometer", 1.0), ("micrometer", 1e3), ("millimeter", 1e6),
])  # fmt: skip
def test_every_ngff_length_unit_becomes_nanometres(tmp_path, unit, factor):
    data = np.zeros((2, 8, 8), np.uint8)
    path = _ngff(tmp_path / "a.ome.zarr", data, [_axis(a, "space", unit) for a in "zyx"],
                 [40.0, 8.0, 8.0])  # fmt: skip
    assert open_volume(path).voxel_size == pytest.approx((40 * factor, 8 * factor, 8 * factor))


def test_an_unknown_unit_is_an_error_not_nanometres(tmp_path):
    path = _ngff(tmp_path / "a.ome.zarr", np.zeros((2, 8, 8), np.uint8),
                 [_axis(a, "space", "furlong") for a in "zyx"], [1, 1, 1])  # fmt: skip
    with pytest.raises(EmdaError, match="unknown length unit 'furlong'"):
        open_volume(path)


def test_singleton_time_and_channel_axes_are_dropped(tmp_path):
    data = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(1, 1, 3, 8, 8)
    axes = [_axis("t", "time", "second"), _axis("c", "channel"), *SPACE_UM]
    path = _ngff(tmp_path / "tczyx.ome.zarr", data, axes, [1.0, 1.0, 0.05, 0.005, 0.005])
    volume = open_volume(path)
    assert volume.shape == (3, 8, 8) and volume.voxel_size == pytest.approx((50, 5, 5))
    np.testing.assert_array_equal(volume.read(1, slice(2, 4)), data[0, 0, 1, 2:4])


def test_a_channel_is_chosen_with_channel(tmp_path):
    data = np.stack([np.full((3, 8, 8), c, np.uint8) for c in range(2)])  # c, z, y, x
    path = _ngff(tmp_path / "czyx.ome.zarr", data, [_axis("c", "channel"), *SPACE_UM],
                 [1.0, 0.05, 0.005, 0.005])  # fmt: skip
    with pytest.raises(EmdaError, match="has 2 channels .* --channel N"):
        open_volume(path)
    assert open_volume(path, channel=1).read().max() == 1
    with pytest.raises(EmdaError, match="--channel 2: .* channels 0..1"):
        open_volume(path, channel=2)


def test_several_time_points_are_refused(tmp_path):
    path = _ngff(tmp_path / "t.ome.zarr", np.zeros((2, 3, 8, 8), np.uint8),
                 [_axis("t", "time"), *SPACE_UM], [1, 1, 1, 1])  # fmt: skip
    with pytest.raises(EmdaError, match="axis 't' has 2 entries"):
        open_volume(path)


def test_a_5d_image_predicts_and_describes_like_a_3d_one(tmp_path):
    from .conftest import CROPS

    raw = open_volume(CROPS / "vnc/raw.tif")
    data = raw.read()[None, None]
    axes = [_axis("t", "time"), _axis("c", "channel"), *SPACE_UM]
    scale = [1.0, 1.0, *(v / 1000 for v in raw.voxel_size)]
    path = _ngff(tmp_path / "vnc.ome.zarr", data, axes, scale)
    info = runner.invoke(app, ["info", str(path)], env={"COLUMNS": "200"})
    assert info.exit_code == 0, info.output
    assert "(12, 320, 320)" in info.output and "50" in info.output


@pytest.mark.parametrize("unit, factor", [("nm", 1.0), ("µm", 1e3), ("Å", 0.1)])
def test_ome_tiff_physical_sizes_are_read(tmp_path, unit, factor):
    path = tmp_path / "a.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeX": 8.0, "PhysicalSizeXUnit": unit,
                "PhysicalSizeY": 8.0, "PhysicalSizeYUnit": unit,
                "PhysicalSizeZ": 30.0, "PhysicalSizeZUnit": unit}  # fmt: skip
    tifffile.imwrite(path, np.zeros((3, 16, 16), np.uint8), ome=True, metadata=metadata)
    assert open_volume(path).voxel_size == pytest.approx((30 * factor, 8 * factor, 8 * factor))


def test_ome_tiff_sizes_default_to_micrometres(tmp_path):
    path = tmp_path / "b.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeX": 0.005, "PhysicalSizeY": 0.005,
                "PhysicalSizeZ": 0.05}  # fmt: skip
    tifffile.imwrite(path, np.zeros((3, 16, 16), np.uint8), ome=True, metadata=metadata)
    assert open_volume(path).voxel_size == pytest.approx((50, 5, 5))


def test_predict_reads_one_channel_of_a_multichannel_image(tmp_path):
    from .conftest import CROPS, adapt_on_crops

    run = tmp_path / "run"
    assert adapt_on_crops(run, target=None).exit_code == 0
    raw = open_volume(CROPS / "vnc/raw.tif")
    data = np.stack([255 - raw.read(), raw.read()])  # c, z, y, x: channel 1 is the image
    axes = [_axis("c", "channel"), *SPACE_UM]
    path = _ngff(tmp_path / "two.ome.zarr", data, axes, [1.0, 0.05, 0.0046, 0.0046])
    for args, out in (([str(CROPS / "vnc/raw.tif")], "a.tif"),
                      ([str(path), "--channel", "1"], "b.tif")):  # fmt: skip
        result = runner.invoke(app, ["predict", str(run), *args, "-o", str(tmp_path / out),
                                     "--quiet", "--device", "cpu"])  # fmt: skip
        assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"),
                                  tifffile.imread(tmp_path / "b.tif"))  # fmt: skip
    refused = runner.invoke(app, ["predict", str(run), str(path), "-o", str(tmp_path / "c.tif")])
    assert refused.exit_code == 1 and "--channel" in refused.output


def test_training_commands_read_one_channel_of_a_multichannel_target(tmp_path):
    """adapt, finetune and recalibrate pick a channel as predict does, and name their
    own option when it is missing or wrong."""
    from .conftest import CROPS, TINY_TRAIN

    raw, labels = open_volume(CROPS / "vnc/raw.tif"), CROPS / "vnc/labels.tif"
    data = np.stack([255 - raw.read(), raw.read()])  # c, z, y, x: channel 1 is the image
    path = str(_ngff(tmp_path / "two.ome.zarr", data, [_axis("c", "channel"), *SPACE_UM],
                     [1.0, 0.05, 0.0046, 0.0046]))  # fmt: skip
    src = ["--source", str(CROPS / "epfl_train/raw.tif"), "--source-labels",
           str(CROPS / "epfl_train/labels.tif")]  # fmt: skip
    plain, picked = tmp_path / "plain", tmp_path / "picked"
    targets = ((plain, [str(CROPS / "vnc/raw.tif")]), (picked, [path, "--target-channel", "1"]))
    for out, target in targets:
        result = runner.invoke(app, ["adapt", *src, "--target", *target, "--method", "ynet",
                                     "--out", str(out), *TINY_TRAIN])  # fmt: skip
        assert result.exit_code == 0, result.output
    from emda.model.checkpoint import load_checkpoint

    want, got = load_checkpoint(plain).state_dict, load_checkpoint(picked).state_dict
    for name, value in want.items():  # the same pixels: the same training, bit for bit
        np.testing.assert_array_equal(value.numpy(), got[name].numpy())
    refused = runner.invoke(app, ["adapt", *src, "--target", path, "--method", "ynet",
                                  "--out", str(tmp_path / "no"), *TINY_TRAIN])  # fmt: skip
    assert refused.exit_code == 1 and "choose one with --target-channel N" in refused.output
    recal = runner.invoke(app, ["recalibrate", str(plain), "--target", path, "--target-channel",
                                "1", "--out", str(tmp_path / "bn"), "--batches", "2"])  # fmt: skip
    assert recal.exit_code == 0, recal.output
    tuned = runner.invoke(app, ["finetune", str(plain), "--target", path, "--target-channel",
                                "1", "--target-labels", str(labels), "--out", str(tmp_path / "ft"),
                                *TINY_TRAIN[:-2]])  # fmt: skip  # the network is the run's
    assert tuned.exit_code == 0, tuned.output
    tiff = runner.invoke(app, ["recalibrate", str(plain), "--target", str(CROPS / "vnc/raw.tif"),
                               "--target-channel", "0", "--out", str(tmp_path / "x")])  # fmt: skip
    assert tiff.exit_code == 1 and "--target-channel 0: applies to OME-Zarr images" in tiff.output


def test_hdf5_datasets_open_by_address_or_key_with_their_resolution(tmp_path):
    h5py = pytest.importorskip("h5py")
    data = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)
    path = tmp_path / "cremi.hdf"
    with h5py.File(path, "w") as f:
        raw = f.create_dataset("volumes/raw", data=data, chunks=(1, 16, 16))
        raw.attrs["resolution"] = (40.0, 4.0, 4.0)  # nm, as CREMI writes it
        f.create_dataset("fiji", data=data).attrs["element_size_um"] = (0.05, 0.005, 0.005)
    for volume in (open_volume(f"{path}/volumes/raw"), open_volume(path, "volumes/raw")):
        assert volume.lazy and volume.voxel_size == (40.0, 4.0, 4.0)
        np.testing.assert_array_equal(volume.read(2, slice(3, 9)), data[2, 3:9])
    assert open_volume(f"{path}/fiji").voxel_size == pytest.approx((50, 5, 5))
    with pytest.raises(EmdaError, match="datasets here: fiji"):
        open_volume(path)
    with pytest.raises(EmdaError, match="no dataset 'nope'"):
        open_volume(path, "nope")


def test_mrc_files_are_memory_mapped_with_the_header_voxel_size(tmp_path):
    mrcfile = pytest.importorskip("mrcfile")
    data = np.arange(3 * 8 * 10, dtype=np.float32).reshape(3, 8, 10)
    path = tmp_path / "tomo.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (12.0, 12.0, 30.0)  # angstrom, x y z
    volume = open_volume(path)
    assert volume.lazy and volume.shape == (3, 8, 10)
    assert volume.voxel_size == pytest.approx((3.0, 1.2, 1.2))
    np.testing.assert_array_equal(volume.read(1), data[1])
    (tmp_path / "bad.mrc").write_bytes(b"not an mrc file")
    with pytest.raises(EmdaError, match="bad.mrc: not a readable MRC file"):
        open_volume(tmp_path / "bad.mrc")


def test_predict_reads_hdf5_block_by_block_like_tiff(tmp_path):
    h5py = pytest.importorskip("h5py")
    from .conftest import CROPS, adapt_on_crops

    run = tmp_path / "run"
    assert adapt_on_crops(run, target=None).exit_code == 0
    raw = open_volume(CROPS / "vnc/raw.tif")
    with h5py.File(tmp_path / "vnc.h5", "w") as f:
        f.create_dataset("raw", data=raw.read(), chunks=(1, 64, 64)).attrs["resolution"] = (
            raw.voxel_size
        )
    outputs = []
    for source in (str(CROPS / "vnc/raw.tif"), f"{tmp_path}/vnc.h5/raw"):
        out = tmp_path / f"p{len(outputs)}.tif"
        result = runner.invoke(app, ["predict", str(run), source, "-o", str(out), "--quiet",
                                     "--device", "cpu", "--block-size", "256"])  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(tifffile.imread(out))
    np.testing.assert_array_equal(*outputs)


def test_ngff_04_output_validates_and_its_labels_follow_the_image(tmp_path):
    pytest.importorskip("ome_zarr_models", reason="ome-zarr-models absent")
    from ome_zarr_models.v04.image import Image
    from ome_zarr_models.v04.image_label import ImageLabel
    from ome_zarr_models.v04.labels import Labels

    from .conftest import CROPS, adapt_on_crops

    run = tmp_path / "run"
    assert adapt_on_crops(run, target=None).exit_code == 0
    image = tmp_path / "vnc.ome.zarr"
    args = [str(CROPS / "vnc/raw.tif"), "-o", str(image), "--ngff", "0.4", "--pyramid", "1"]
    result = runner.invoke(app, ["predict", str(run), *args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert (image / ".zattrs").exists() and not (image / "zarr.json").exists()
    Image.from_zarr(zarr.open_group(str(image), mode="r"))
    assert open_volume(image).voxel_size == (50.0, 4.6, 4.6)
    labels = f"{image}/labels/mito"  # no --ngff: the image's version
    result = runner.invoke(app, ["instances", str(image), "-o", labels, "--quiet"])
    assert result.exit_code == 0, result.output
    ImageLabel.from_zarr(zarr.open_group(labels, mode="r"))
    listed = Labels.from_zarr(zarr.open_group(f"{image}/labels", mode="r"))
    assert listed.attributes.labels == ["mito"]
    other = runner.invoke(app, ["instances", str(image), "-o", f"{image}/labels/b", "--ngff",
                                "0.5", "--quiet"])  # fmt: skip
    assert other.exit_code == 1 and "is NGFF 0.4; its labels must be too" in other.output
    plain = runner.invoke(app, ["predict", str(run), str(CROPS / "vnc/raw.tif"), "-o",
                                str(tmp_path / "p.tif"), "--ngff", "0.4"])  # fmt: skip
    assert plain.exit_code == 1 and "applies to .ome.zarr outputs only" in plain.output


def test_predict_several_volumes_names_each_output(tmp_path):
    import shutil

    from .conftest import CROPS, adapt_on_crops

    run = tmp_path / "run"
    assert adapt_on_crops(run, target=None).exit_code == 0
    inputs = [tmp_path / "cell1.tif", tmp_path / "cell2.tif"]
    for source, copy in zip(("vnc", "epfl_test"), inputs):
        shutil.copy(CROPS / source / "raw.tif", copy)
    inputs = [str(i) for i in inputs]
    (tmp_path / "pred").mkdir()
    out, mask = str(tmp_path / "pred/{name}.zarr"), str(tmp_path / "pred/{name}_mask.tif")
    missing = runner.invoke(app, ["predict", str(run), *inputs, "-o", str(tmp_path / "p.zarr")])
    assert missing.exit_code == 1 and "put {name} in it" in missing.output
    clash = runner.invoke(app, ["predict", str(run), inputs[0], inputs[0], "-o", out])
    assert clash.exit_code == 1 and "would write the same outputs" in clash.output
    result = runner.invoke(app, ["predict", str(run), *inputs, "-o", out, "--mask", mask,
                                 "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert written == ["cell1.zarr", "cell1_mask.tif", "cell2.zarr", "cell2_mask.tif"]
    single = tmp_path / "single.zarr"
    assert runner.invoke(app, ["predict", str(run), inputs[1], "-o", str(single),
                               "--quiet"]).exit_code == 0  # fmt: skip
    np.testing.assert_array_equal(open_volume(single).read(),
                                  open_volume(tmp_path / "pred/cell2.zarr").read())  # fmt: skip
    again = runner.invoke(app, ["predict", str(run), *inputs, "-o", out])
    assert again.exit_code == 1 and "already exists" in again.output  # before any work


def test_predictions_are_written_as_hdf5_and_mrc_that_their_libraries_read(tmp_path):
    """HDF5 (a dataset with its voxel size as ilastik and CREMI files give it) and MRC
    (voxel size in the header), read back by h5py and mrcfile, and by emda as the same
    probabilities and mask as a TIFF output."""
    h5py = pytest.importorskip("h5py")
    mrcfile = pytest.importorskip("mrcfile")
    from .conftest import CROPS

    raw = str(CROPS / "vnc/raw.tif")
    args = ["predict", "emda:vnc", raw, "--quiet", "--precision", "float32"]
    for out in (["-o", str(tmp_path / "p.tif"), "--mask", str(tmp_path / "m.tif")],
                ["-o", str(tmp_path / "p.h5/prob"), "--mask", str(tmp_path / "m.mrc")],
                ["-o", str(tmp_path / "p.mrc"), "--mask", str(tmp_path / "m.h5")]):  # fmt: skip
        result = runner.invoke(app, [*args, *out])
        assert result.exit_code == 0, result.output
    prob, mask = tifffile.imread(tmp_path / "p.tif"), tifffile.imread(tmp_path / "m.tif")
    with h5py.File(tmp_path / "p.h5", "r") as fh:
        assert list(fh) == ["prob"]
        np.testing.assert_array_equal(fh["prob"][:], prob)
        assert tuple(fh["prob"].attrs["resolution"]) == pytest.approx((50, 4.6, 4.6))
        assert tuple(fh["prob"].attrs["element_size_um"]) == pytest.approx((0.05, 0.0046, 0.0046))
        assert fh["prob"].attrs["emda_complete"]
    with h5py.File(tmp_path / "m.h5", "r") as fh:
        np.testing.assert_array_equal(fh["data"][:], mask)
    with mrcfile.open(tmp_path / "m.mrc") as mrc:
        assert mrc.data.dtype == np.int8  # MRC has no uint8: a mask fits int8
        np.testing.assert_array_equal(mrc.data, mask)
        assert tuple(mrc.voxel_size.item()) == pytest.approx((46, 46, 500))  # angstrom, x y z
    with mrcfile.open(tmp_path / "p.mrc") as mrc:
        assert mrc.data.dtype == np.float32  # uint8 probabilities as p in [0, 1]
        np.testing.assert_allclose(mrc.data * 255, prob, atol=1e-3)
    for name in ("p.h5/prob", "p.mrc", "m.mrc", "m.h5"):
        volume = open_volume(tmp_path / name)
        assert volume.voxel_size == pytest.approx((50, 4.6, 4.6)), name
    scores = runner.invoke(app, ["evaluate", str(tmp_path / "p.tif"), str(tmp_path / "p.h5/prob"),
                                 str(tmp_path / "p.mrc"), str(tmp_path / "m.mrc"), "--labels",
                                 str(CROPS / "vnc/labels.tif"), "--json",
                                 str(tmp_path / "s.json")])  # fmt: skip
    assert scores.exit_code == 0, scores.output
    import json

    ious = [e["iou"] for e in json.loads((tmp_path / "s.json").read_text())]
    assert ious == pytest.approx([ious[0]] * 4)


def test_an_hdf5_output_never_replaces_other_datasets_and_mrc_has_no_inner_path(tmp_path):
    h5py = pytest.importorskip("h5py")
    from .conftest import CROPS

    shared = tmp_path / "lab.h5"
    with h5py.File(shared, "w") as fh:
        fh["raw"] = open_volume(CROPS / "vnc/raw.tif").read()
    before = shared.read_bytes()
    args = ["predict", "emda:vnc", str(CROPS / "vnc/raw.tif"), "--quiet", "--overwrite", "-o"]
    other = runner.invoke(app, [*args, f"{shared}/prob"])
    assert other.exit_code == 1
    assert "holds other datasets (raw); emda writes a whole new file" in other.output
    itself = runner.invoke(app, ["predict", "emda:vnc", f"{shared}/raw", "-o", f"{shared}/prob"])
    assert itself.exit_code == 1 and "would overwrite the input" in itself.output
    assert shared.read_bytes() == before
    inner = runner.invoke(app, [*args, str(tmp_path / "p.mrc/prob")])
    assert inner.exit_code == 1 and "p.mrc/prob: unsupported output type" in inner.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.h5"]


def test_instances_go_to_hdf5_with_their_record_and_mrc_refuses_wide_labels(tmp_path):
    pytest.importorskip("h5py")
    from .conftest import CROPS

    prob = tmp_path / "p.h5/prob"
    args = ["predict", "emda:vnc", str(CROPS / "vnc/raw.tif"), "-o", str(prob), "--quiet"]
    assert runner.invoke(app, args).exit_code == 0
    done = runner.invoke(app, ["instances", str(prob), "-o", str(tmp_path / "lab.h5")])
    assert done.exit_code == 0, done.output
    labels = open_volume(tmp_path / "lab.h5")
    assert labels.attributes()["emda_instances"]["count"] == int(labels.read().max())
    refused = runner.invoke(app, ["instances", str(prob), "-o", str(tmp_path / "lab.mrc")])
    assert refused.exit_code == 1
    assert "MRC has no integer type for uint32 labels" in refused.output
    assert not (tmp_path / "lab.mrc").exists()
