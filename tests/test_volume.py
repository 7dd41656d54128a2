import numpy as np
import pytest
import tifffile
import zarr

from emda import EmdaError
from emda.io.volume import open_volume, parse_voxel_size, read_labels, split_address, to_foreground
from emda.io.writer import write_volume


def test_tiff_round_trip_keeps_data_and_voxel_size(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (3, 20, 30), dtype=np.uint8)
    write_volume(tmp_path / "v.tif", data, voxel_size=(50.0, 4.6, 4.6))
    v = open_volume(tmp_path / "v.tif")
    np.testing.assert_array_equal(v.read(), data)
    assert v.voxel_size == pytest.approx((50.0, 4.6, 4.6))
    assert not v.lazy


def test_float_tiff_round_trip(tmp_path):
    data = np.random.default_rng(1).random((2, 8, 8)).astype(np.float32)
    write_volume(tmp_path / "p.tiff", data)
    np.testing.assert_array_equal(open_volume(tmp_path / "p.tiff").read(), data)


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_round_trip_in_both_formats_is_lazy(tmp_path, fmt):
    data = np.arange(4 * 10 * 12, dtype=np.uint16).reshape(4, 10, 12)
    group = zarr.open_group(str(tmp_path / "vol.zarr"), mode="w", zarr_format=fmt)
    arr = group.create_array("raw", shape=data.shape, dtype=data.dtype, chunks=(1, 5, 5))
    arr[:] = data
    arr.attrs["voxel_size"] = [8.0, 4.0, 4.0]
    for v in (open_volume(tmp_path / "vol.zarr/raw"), open_volume(tmp_path / "vol.zarr", "raw")):
        assert v.lazy and v.shape == (4, 10, 12) and v.voxel_size == (8.0, 4.0, 4.0)
        np.testing.assert_array_equal(v.read(2, slice(3, 7), slice(0, 5)), data[2, 3:7, 0:5])


@pytest.mark.parametrize("fmt", [2, 3])
def test_write_zarr_into_existing_group_keeps_its_format(tmp_path, fmt):
    zarr.open_group(str(tmp_path / "out.zarr"), mode="w", zarr_format=fmt)
    data = np.ones((2, 6, 6), np.uint8)
    write_volume(tmp_path / "out.zarr/pred", data, voxel_size=(1.0, 2.0, 3.0))
    v = open_volume(tmp_path / "out.zarr/pred")
    assert v.array.metadata.zarr_format == fmt
    np.testing.assert_array_equal(v.read(), data)
    assert v.voxel_size == (1.0, 2.0, 3.0)


def test_root_zarr_array_and_ome_multiscale_group(tmp_path):
    write_volume(tmp_path / "a.zarr", np.zeros((1, 4, 4), np.uint8))
    assert open_volume(tmp_path / "a.zarr").shape == (1, 4, 4)
    g = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w", zarr_format=2)
    g.create_array("0", shape=(2, 8, 8), dtype="uint8")
    g.attrs["multiscales"] = [
        {
            "axes": [{"name": a, "unit": "nanometer"} for a in "zyx"],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [30.0, 4.0, 4.0]}],
                }
            ],
        }
    ]
    v = open_volume(tmp_path / "ome.zarr")
    assert v.shape == (2, 8, 8) and v.voxel_size == (30.0, 4.0, 4.0)


def test_2d_images_are_one_slice_volumes(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", np.ones((5, 7), np.uint8))
    v = open_volume(tmp_path / "img.tif")
    assert v.shape == (1, 5, 7) and v.read(0).shape == (5, 7)


def test_zarr_group_without_key_lists_its_arrays(tmp_path):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("raw", shape=(1, 2, 2), dtype="uint8")
    with pytest.raises(EmdaError, match=r"zarr group.*arrays here: raw"):
        open_volume(tmp_path / "g.zarr")
    with pytest.raises(EmdaError, match="key 'nope'"):
        open_volume(tmp_path / "g.zarr/nope")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.tif", "no such file"),
        ("vol.png", "unsupported file type"),
        ("missing.zarr", "no such zarr store"),
    ],
)
def test_bad_paths_are_one_line_errors(tmp_path, name, message):
    (tmp_path / "vol.png").write_bytes(b"\x89PNG")
    with pytest.raises(EmdaError, match=message):
        open_volume(tmp_path / name)


def test_corrupted_tiff(tmp_path):
    good = tmp_path / "g.tif"
    tifffile.imwrite(
        good, np.ones((4, 64, 64), np.uint8), compression="zlib", photometric="minisblack"
    )
    (tmp_path / "bad.tif").write_bytes(good.read_bytes()[:200])
    with pytest.raises(EmdaError, match="bad.tif"):
        open_volume(tmp_path / "bad.tif").read()


def test_labels_accept_01_and_0255_masks_and_refuse_others(tmp_path):
    assert to_foreground(np.array([0, 255, 0]), "x").tolist() == [0, 1, 0]
    assert to_foreground(np.array([0, 1, 1]), "x").tolist() == [0, 1, 1]
    with pytest.raises(EmdaError, match=r"values \{0, 1, 2\}.*--foreground"):
        to_foreground(np.array([0, 1, 2]), "x")
    assert to_foreground(np.array([0, 1, 2]), "x", foreground=2).tolist() == [0, 0, 1]
    tifffile.imwrite(tmp_path / "l.tif", np.array([[[0, 255]]], np.uint8))
    assert read_labels(tmp_path / "l.tif").read().tolist() == [[[0, 1]]]


def test_split_address_and_voxel_size_parsing():
    assert split_address("a/b.zarr/raw/s0") == (split_address("a/b.zarr")[0], "raw/s0")
    assert split_address("x.zarr/raw", "s0")[1] == "raw/s0"
    assert parse_voxel_size("50,4.6,4.6") == (50.0, 4.6, 4.6)
    assert parse_voxel_size("5") == (5.0, 5.0, 5.0)
    with pytest.raises(EmdaError, match="--voxel-size"):
        parse_voxel_size("5,-1,2")


def test_writer_never_leaves_a_partial_output(tmp_path):
    from emda.io.writer import VolumeWriter

    for name in ("out.tif", "out.zarr"):
        with pytest.raises(RuntimeError), VolumeWriter(tmp_path / name, (2, 4, 4), "uint8") as w:
            w.write(0, np.ones((4, 4), np.uint8))
            raise RuntimeError("killed mid-write")
        assert list(tmp_path.iterdir()) == []
    write_volume(tmp_path / "done.tif", np.ones((1, 2, 2), np.uint8))
    with pytest.raises(EmdaError, match="already exists"):
        write_volume(tmp_path / "done.tif", np.ones((1, 2, 2), np.uint8))


def test_zarr_labels_stay_on_disk_and_are_converted_per_block(tmp_path):
    data = np.zeros((3, 8, 8), np.uint8)
    data[1, 2:4, 2:4] = 255
    write_volume(tmp_path / "l.zarr", data)
    labels = read_labels(tmp_path / "l.zarr")
    assert labels.lazy and labels.read(1, slice(2, 4), slice(2, 4)).tolist() == [[1, 1], [1, 1]]
    bad = data.copy()
    bad[2, 0, 0] = 7
    write_volume(tmp_path / "bad.zarr", bad)
    with pytest.raises(EmdaError, match=r"bad.zarr: labels hold values \{0, 7\}"):
        read_labels(tmp_path / "bad.zarr")


def test_all_or_nothing_commits_together_or_removes_every_partial_output(tmp_path):
    from emda.io.writer import all_or_nothing

    data = np.ones((2, 8, 8), np.uint8)
    with all_or_nothing() as open_writer:
        open_writer(tmp_path / "a.tif", data.shape, data.dtype).write(slice(None), data)
        open_writer(tmp_path / "b.zarr", data.shape, data.dtype).write(slice(None), data)
    assert (tmp_path / "a.tif").is_file() and (tmp_path / "b.zarr").is_dir()

    (tmp_path / "taken.tif").write_bytes(b"")  # the second output cannot be opened
    with pytest.raises(EmdaError, match="already exists"), all_or_nothing() as open_writer:
        open_writer(tmp_path / "c.tif", data.shape, data.dtype).write(slice(None), data)
        open_writer(tmp_path / "taken.tif", data.shape, data.dtype)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.zarr", "taken.tif"]
