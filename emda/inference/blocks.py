"""Cutting a volume into the blocks that prediction works on.

A block is one z-slice, or a (y, x) window of one when slices are larger than the block
size, plus a halo of context on every side that is read and predicted but not written.
Blocks are aligned with the output's chunks, so that blocks predicted by different
processes never write to the same chunk. Peak memory depends on the block, halo and
tile sizes, never on the volume's size.
"""

from __future__ import annotations

from dataclasses import dataclass

from emda.errors import EmdaError

CHUNK = 1024  # output chunk edge (y, x) when the block size allows it
BLOCK_MULTIPLE = 256


@dataclass(frozen=True)
class Block:
    z: int
    y: slice  # the written region (volume coordinates)
    x: slice
    read_y: slice  # the region read and predicted: ``y``/``x`` plus the halo, clipped
    read_x: slice

    @property
    def key(self) -> str:
        """How the block is recorded in a partial output's list of finished blocks."""
        return f"{self.z}/{self.y.start}/{self.x.start}"

    @property
    def inner(self) -> tuple[slice, slice]:
        """The written region in the coordinates of the region read."""
        y0, x0 = self.y.start - self.read_y.start, self.x.start - self.read_x.start
        return (
            slice(y0, y0 + self.y.stop - self.y.start),
            slice(x0, x0 + self.x.stop - self.x.start),
        )


def check_block_size(block_size: int, halo: int) -> None:
    if block_size < BLOCK_MULTIPLE or block_size % BLOCK_MULTIPLE:
        raise EmdaError(f"--block-size {block_size}: must be a multiple of {BLOCK_MULTIPLE}")
    if halo < 0:
        raise EmdaError(f"--halo {halo}: must be >= 0")


def output_chunks(shape: tuple[int, int, int], block_size: int) -> tuple[int, int, int]:
    """(1, cy, cx): chunks that tile every block exactly."""
    edge = CHUNK if block_size % CHUNK == 0 else BLOCK_MULTIPLE
    _, y, x = shape
    return (1, min(y, edge), min(x, edge))


def plan_blocks(shape: tuple[int, int, int], block_size: int, halo: int) -> list[Block]:
    """Every block of a (z, y, x) volume, z-major. Slices no larger than ``block_size``
    are single blocks (no halo needed: the whole slice is the context)."""
    check_block_size(block_size, halo)
    nz, ny, nx = shape
    blocks = []
    for z in range(nz):
        for y0 in range(0, ny, block_size):
            for x0 in range(0, nx, block_size):
                y1, x1 = min(y0 + block_size, ny), min(x0 + block_size, nx)
                blocks.append(
                    Block(
                        z,
                        slice(y0, y1),
                        slice(x0, x1),
                        slice(max(0, y0 - halo), min(ny, y1 + halo)),
                        slice(max(0, x0 - halo), min(nx, x1 + halo)),
                    )
                )
    return blocks
