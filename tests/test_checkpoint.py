import os
import pickle

import pytest
import torch

from emda import EmdaError
from emda.data.normalization import IntensityRange, Normalization
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint


def _checkpoint() -> Checkpoint:
    model = UNet(UNetConfig(base_channels=4, depth=2))
    return Checkpoint(
        UNetConfig(base_channels=4, depth=2),
        model.state_dict(),
        Normalization(2.0, 98.0),
        IntensityRange(10.0, 200.0),
        (50.0, 4.6, 4.6),
        "ft",
        {"weight": 0.1, "levels": [1.0, 2.0]},
        iteration=7,
    )


def test_round_trip_restores_weights_and_metadata(tmp_path):
    ckpt = _checkpoint()
    save_checkpoint(ckpt, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    x = torch.randn(1, 1, 16, 16)
    m1, m2 = UNet(ckpt.model_config), loaded.build_model()
    m1.load_state_dict(ckpt.state_dict)
    torch.testing.assert_close(m1.eval()(x), m2.eval()(x))
    assert loaded.normalization == Normalization(2.0, 98.0)
    assert loaded.source_range == IntensityRange(10.0, 200.0)
    assert loaded.voxel_size == (50.0, 4.6, 4.6) and loaded.iteration == 7
    assert loaded.method_options == {"weight": 0.1, "levels": [1.0, 2.0]}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


def test_run_directory_resolves_to_its_checkpoint(tmp_path):
    save_checkpoint(_checkpoint(), tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path).method == "ft"


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "emda-checkpoint", "payload": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(EmdaError, match="refused to load"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("kind", ["truncated", "garbage", "other", "version", "missing"])
def test_broken_checkpoints_are_one_line_errors(tmp_path, kind):
    path = tmp_path / "c.pt"
    save_checkpoint(_checkpoint(), path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif kind == "other":
        torch.save({"weights": torch.zeros(2)}, path)
    elif kind == "version":
        data = torch.load(path, weights_only=True)
        torch.save({**data, "format_version": 99}, path)
    else:
        path.unlink()
    with pytest.raises(EmdaError, match="c.pt") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_plain_pickle_is_not_a_checkpoint(tmp_path):
    (tmp_path / "p.pt").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(EmdaError, match="p.pt"):
        load_checkpoint(tmp_path / "p.pt")
