import torch

from emda.data.dihedral import TRANSFORMS, dihedral, undo_dihedral


def test_the_eight_transforms_are_distinct_and_each_is_undone():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    seen = [dihedral(x, k) for k in TRANSFORMS]
    assert len({tuple(t.flatten().tolist()) for t in seen}) == 8
    assert torch.equal(seen[0], x)
    for k, t in zip(TRANSFORMS, seen, strict=True):
        assert torch.equal(undo_dihedral(t, k), x)
