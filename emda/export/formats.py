"""TorchScript and ONNX files of a run's network, each checked against PyTorch.

Both take a normalised (batch, 1, height, width) float32 image whose height and width are
multiples of the network's size multiple, and give mitochondria probabilities of the
same shape (:mod:`emda.export.network`). Each file is written beside its final name and
renamed when complete and checked, so a failed export leaves nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from emda.errors import EmdaError
from emda.export.network import ProbabilityNetwork, example_tile, metadata_json
from emda.model.checkpoint import Checkpoint

#: agreement with PyTorch a runtime must reach on the example tile (probabilities)
TOLERANCE = 1e-4
ONNX_OPSET = 18


def export_torchscript(checkpoint: Checkpoint, network: ProbabilityNetwork, path: Path) -> float:
    """A traced TorchScript module (loads with ``torch.jit.load``, no emda needed), with
    ``emda.json`` describing its input as an extra file. Returns the largest difference
    from PyTorch on a tile of another size than the one traced."""
    tile = example_tile(checkpoint)
    with torch.no_grad():
        traced = torch.jit.trace(network, tile, check_trace=False)
    extra = {"emda.json": metadata_json(checkpoint)}
    _write(path, lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=extra))
    other = example_tile(checkpoint, 2 * checkpoint.model_config.divisor * 3)
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        return float((loaded(other) - network(other)).abs().max())


def export_onnx(checkpoint: Checkpoint, network: ProbabilityNetwork, path: Path) -> float | None:
    """An ONNX model with dynamic batch, height and width, and ``emda`` metadata. Returns
    the largest difference from PyTorch under onnxruntime, or None without onnxruntime."""
    try:
        import onnx
    except ImportError:
        raise EmdaError(
            "--format onnx needs the onnx package: pip install 'emda[export]'"
        ) from None
    tile = example_tile(checkpoint)
    batch, height, width = (torch.export.Dim(n, min=1, max=65536) for n in ("batch", "h", "w"))
    multiple = checkpoint.model_config.divisor
    shapes = {"x": {0: batch, 2: multiple * height, 3: multiple * width}}

    def write(tmp: Path) -> None:
        program = torch.onnx.export(network, (tile,), dynamo=True, dynamic_shapes=shapes,
                                    input_names=["x"], output_names=["probability"],
                                    opset_version=ONNX_OPSET, verbose=False)  # fmt: skip
        model = program.model_proto
        entry = model.metadata_props.add()
        entry.key, entry.value = "emda", metadata_json(checkpoint)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))

    _write(path, write)
    try:
        import onnxruntime
    except ImportError:
        return None
    other = example_tile(checkpoint, 2 * multiple * 3).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"x": np.concatenate([other, other[:, :, ::-1]])})
    with torch.no_grad():
        expected = network(torch.from_numpy(np.concatenate([other, other[:, :, ::-1]]).copy()))
    return float(np.abs(result - expected.numpy()).max())


def _write(path: Path, write) -> None:
    """``write(tmp)`` a sibling, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
