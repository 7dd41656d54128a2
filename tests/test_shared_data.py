"""Checks on the full data sets in ../shared/data; skipped where they are absent."""

import pytest

from emda.io.volume import open_volume, read_labels
from tests.conftest import SHARED

pytestmark = pytest.mark.skipif(
    not (SHARED / "README.md").exists(),
    reason=f"full data sets not found at {SHARED} (only present next to the project's checkout)",
)

EXPECTED = {
    "drosophila_vnc": ((20, 1024, 1024), (50.0, 4.6, 4.6)),
    "epfl_lucchi_pp/train": ((165, 768, 1024), (5.0, 5.0, 5.0)),
    "epfl_lucchi_pp/test": ((165, 768, 1024), (5.0, 5.0, 5.0)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_full_volumes_open_with_shape_voxel_size_and_binary_labels(name):
    shape, voxel = EXPECTED[name]
    raw = open_volume(SHARED / name / "raw.tif")
    labels = read_labels(SHARED / name / "labels.tif")
    assert raw.shape == labels.shape == shape
    assert raw.voxel_size == pytest.approx(voxel)
    assert set(labels.read(0).ravel().tolist()) <= {0, 1}


def test_bundled_crops_match_the_full_volumes():
    import importlib.util

    from tests.conftest import CROPS

    spec = importlib.util.spec_from_file_location(
        "make_crops", CROPS.parents[1] / "examples" / "make_demo_crops.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, (folder, *window) in module.CROPS.items():
        full = open_volume(SHARED / folder / "labels.tif").read()[tuple(window)]
        assert (open_volume(CROPS / name / "labels.tif").read() == full).all()
