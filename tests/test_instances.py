"""`emda instances`: the label image equals scipy's connected components of the same mask,
block by block as whole, with z-connectivity chosen from the voxel size."""

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage
from typer.testing import CliRunner

from emda.cli import app
from emda.io.volume import open_volume
from emda.postprocessing.labeling import Block, label_blocks, structure

from .conftest import CROPS

runner = CliRunner()
WHOLE = Block(slice(None), slice(None), slice(None))


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """The same objects, whatever their numbers."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]], 1), axis=0)
    return len(pairs) == len(np.unique(pairs[:, 0])) == len(np.unique(pairs[:, 1]))


def test_the_bundled_labels_give_scipys_objects(tmp_path):
    labels = tifffile.imread(CROPS / "vnc/labels.tif") > 0
    result = runner.invoke(app, ["instances", str(CROPS / "vnc/labels.tif"),
                                 "-o", str(tmp_path / "inst.zarr"), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = open_volume(tmp_path / "inst.zarr").read()
    expected, count = ndimage.label(labels, structure=structure(True))  # 50 nm z-step: joined
    assert out.dtype == np.uint32 and out.max() == count and same_partition(out, expected)
    assert f"{count} objects (across slices)" in " ".join(result.output.split())
    attrs = dict(zarr.open_array(str(tmp_path / "inst.zarr"), mode="r").attrs)
    assert attrs["emda_kind"] == "labels" and attrs["emda_instances"]["count"] == count
    info = runner.invoke(app, ["info", str(tmp_path / "inst.zarr")], env={"COLUMNS": "200"})
    assert f"{count} from" in info.output and "across slices" in info.output


@pytest.mark.parametrize("seed", range(12))
def test_block_by_block_equals_the_whole_volume(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 30, 3))
    mask = ndimage.binary_opening(rng.random(shape) > 0.5) | (rng.random(shape) > 0.92)
    connect_z, smallest = bool(seed % 2), int(rng.integers(0, 4))
    depth, size = int(rng.integers(1, 8)), int(rng.integers(1, 12))
    found, read, cleanup = label_blocks(lambda b: mask[b.index], shape, connect_z, smallest,
                                        depth, size)  # fmt: skip
    out = read(WHOLE)
    cleanup()
    whole, read_whole, cleanup = label_blocks(lambda b: mask[b.index], shape, connect_z,
                                              smallest, 64, 1024)  # fmt: skip
    assert same_partition(out, read_whole(WHOLE)) and found.count == whole.count
    cleanup()
    expected, _ = ndimage.label(mask, structure=structure(connect_z))
    sizes = np.bincount(expected.ravel())
    expected[sizes[expected] < max(smallest, 1)] = 0
    assert same_partition(out, expected)
    assert np.array_equal(found.sizes[1:], np.bincount(out.ravel())[1:])


def _two_sections(tmp_path, z_step: float):
    mask = np.zeros((2, 20, 20), np.uint8)
    mask[0, 5:10, 5:10] = mask[1, 8:14, 8:14] = 1  # overlapping sections of one object
    path = tmp_path / f"m{z_step}.tif"
    tifffile.imwrite(path, mask, imagej=True, resolution=(1 / 5, 1 / 5),
                     metadata={"spacing": z_step, "unit": "nm"})  # fmt: skip
    return path


@pytest.mark.parametrize("z_step, extra, objects", [
    (50.0, [], 1), (200.0, [], 2), (200.0, ["--connect-z"], 1), (50.0, ["--no-connect-z"], 2),
])  # fmt: skip
def test_slices_connect_when_the_z_step_is_fine_enough(tmp_path, z_step, extra, objects):
    out = tmp_path / "l.tif"
    result = runner.invoke(app, ["instances", str(_two_sections(tmp_path, z_step)), "-o",
                                 str(out), "--quiet", *extra])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert tifffile.imread(out).max() == objects


def test_the_minimum_size_is_a_volume_in_cubic_nanometres(tmp_path):
    mask = np.zeros((1, 30, 30), np.uint8)
    mask[0, 2:4, 2:4] = 1  # 4 voxels of 10 x 5 x 5 nm: 1000 nm^3
    mask[0, 10:20, 10:20] = 1  # 100 voxels: 25000 nm^3
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, mask)
    for size, objects in ((999, 2), (1001, 1), (25001, 0)):
        out = tmp_path / f"l{size}.tif"
        args = ["instances", str(path), "-o", str(out), "--quiet", "--min-size", str(size)]
        result = runner.invoke(app, [*args, "--voxel-size", "10,5,5"])
        assert result.exit_code == 0, result.output
        assert tifffile.imread(out).max() == objects


def test_a_tiff_label_image_keeps_the_voxel_size(tmp_path):
    out = tmp_path / "l.tif"  # uint32: not an ImageJ type, so tifffile's own metadata
    assert runner.invoke(app, ["instances", str(CROPS / "vnc/labels.tif"), "-o", str(out),
                               "--quiet"]).exit_code == 0  # fmt: skip
    assert open_volume(out).voxel_size == open_volume(CROPS / "vnc/labels.tif").voxel_size


def test_labels_of_an_ome_zarr_image_are_an_ngff_image_label(tmp_path):
    models = pytest.importorskip(
        "ome_zarr_models.v05.image_label",
        reason="ome-zarr-models absent",
    )
    from ome_zarr_models.v05.labels import Labels

    image = tmp_path / "img.ome.zarr"
    assert runner.invoke(app, ["instances", str(CROPS / "vnc/labels.tif"), "-o",
                               str(image), "--quiet"]).exit_code == 0  # fmt: skip
    out = f"{image}/labels/mito"
    assert runner.invoke(app, ["instances", str(CROPS / "vnc/labels.tif"), "-o", out,
                               "--quiet"]).exit_code == 0  # fmt: skip
    label = models.ImageLabel.from_zarr(zarr.open_group(out, mode="r"))
    assert label.attributes.ome.image_label.source.image == "../../"
    listed = Labels.from_zarr(zarr.open_group(f"{image}/labels", mode="r"))
    assert listed.attributes.ome.labels == ["mito"]
    assert open_volume(out).voxel_size == (50.0, 4.6, 4.6)


def _balls(tmp_path, centres, radius=8):
    mask = np.zeros((24, 24, 48), np.uint8)
    z, y, x = np.indices(mask.shape)
    for cz, cy, cx in centres:
        mask[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2] = 1
    path = tmp_path / "balls.tif"
    tifffile.imwrite(path, mask)
    return path, mask


@pytest.mark.parametrize("centres, objects", [
    ([(12, 12, 14), (12, 12, 29)], 2),  # two spheres touching through a neck
    ([(12, 12, 20)], 1),  # one sphere stays whole
    ([(12, 12, x) for x in range(10, 38)], 1),  # one tube (a mitochondrion's usual shape)
])  # fmt: skip
def test_split_separates_touching_spheres_and_keeps_one_whole(tmp_path, centres, objects):
    path, mask = _balls(tmp_path, centres)
    assert ndimage.label(mask)[1] == 1  # one connected component either way
    out = tmp_path / "l.tif"
    result = runner.invoke(app, ["instances", str(path), "-o", str(out), "--split", "--quiet",
                                 "--voxel-size", "5,5,5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = tifffile.imread(out)
    assert labels.max() == objects and np.array_equal(labels > 0, mask > 0)
    for label in range(1, objects + 1):  # every part is one piece
        assert ndimage.label(labels == label)[1] == 1


@pytest.mark.parametrize("centres, objects", [([(12, 14)], 1), ([(12, 14), (12, 29)], 2)])
def test_split_on_thick_sections_keeps_bodies_whole_through_the_stack(tmp_path, centres, objects):
    mask = np.zeros((6, 24, 48), np.uint8)  # 50 nm sections of 5 nm pixels
    _, y, x = np.indices(mask.shape)
    for cy, cx in centres:
        mask[1:5][((y - cy) ** 2 + (x - cx) ** 2 <= 64)[1:5]] = 1
    path, out = tmp_path / "m.tif", tmp_path / "l.tif"
    tifffile.imwrite(path, mask)
    result = runner.invoke(app, ["instances", str(path), "-o", str(out), "--split", "--quiet",
                                 "--voxel-size", "50,5,5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = tifffile.imread(out)
    assert labels.max() == objects
    for z in range(1, 5):  # every section shows the same parts, no rings
        assert len(np.unique(labels[z][labels[z] > 0])) == objects


def test_napari_reads_the_labels_as_a_labels_layer(tmp_path):
    """napari's OME-Zarr reader plugin, without a window (napari is not a dev dependency:
    it pulls a GUI stack; the NGFF check above runs everywhere)."""
    reader_plugin = pytest.importorskip("napari_ome_zarr", reason="napari-ome-zarr absent")
    from emda.io.writer import write_volume

    image = tmp_path / "img.ome.zarr"
    raw = open_volume(CROPS / "vnc/raw.tif")
    write_volume(image, raw.read(), raw.voxel_size, pyramid=1)
    assert runner.invoke(app, ["instances", str(CROPS / "vnc/labels.tif"), "-o",
                               f"{image}/labels/mito", "--quiet"]).exit_code == 0  # fmt: skip
    layers = list(reader_plugin.napari_get_reader(str(image))(str(image)))
    kinds = {kind: (data, meta) for data, meta, kind in layers}
    assert set(kinds) == {"image", "labels"}
    for data, meta in kinds.values():
        assert list(meta["scale"]) == [50.0, 4.6, 4.6]
        assert tuple(data[0].shape) == raw.shape
    assert len(kinds["image"][0]) == 2  # the pyramid's two levels


def test_a_mask_in_an_images_labels_group_is_an_image_label(tmp_path):
    """``predict -o img.ome.zarr --mask img.ome.zarr/labels/mask``: viewers show the mask
    as labels over the probabilities."""
    models = pytest.importorskip("ome_zarr_models.v05.image_label", reason="ome-zarr-models absent")
    from .conftest import adapt_on_crops

    run = tmp_path / "run"
    assert adapt_on_crops(run, target=None).exit_code == 0
    image = tmp_path / "img.ome.zarr"
    outputs = ["-o", str(image), "--mask", f"{image}/labels/mask", "--quiet"]
    result = runner.invoke(app, ["predict", str(run), str(CROPS / "vnc/raw.tif"), *outputs])
    assert result.exit_code == 0, result.output
    models.ImageLabel.from_zarr(zarr.open_group(f"{image}/labels/mask", mode="r"))
    listed = zarr.open_group(f"{image}/labels", mode="r").attrs["ome"]["labels"]
    assert listed == ["mask"]
