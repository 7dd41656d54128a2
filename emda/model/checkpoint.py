"""Checkpoints: weights plus everything needed to use them, saved atomically.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(..., weights_only=True)``: opening a downloaded checkpoint never
runs code from it.
"""

from __future__ import annotations

import os
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emda import __version__
from emda.data.normalization import IntensityRange, Normalization
from emda.data.resample import in_plane
from emda.errors import EmdaError
from emda.model import UNet, UNetConfig
from emda.safety.validate import check_state_dict

FORMAT = "emda-checkpoint"
FORMAT_VERSION = 1
#: bounds no real emda network comes near: a crafted checkpoint is refused before its
#: network is built, not after it has filled the machine's memory
MAX_DEPTH = 10
MAX_CHANNELS = 4096


@dataclass
class Checkpoint:
    model_config: UNetConfig
    state_dict: dict[str, torch.Tensor]
    normalization: Normalization
    source_range: IntensityRange
    voxel_size: tuple[float, float, float] | None
    method: str
    method_options: dict[str, Any]
    iteration: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    emda_version: str = __version__

    @property
    def pixel_size(self) -> float | None:
        """The (y, x) pixel size in nm the network works at (``emda.data.resample``):
        recorded by training (None: trained without resampling, it takes any image as
        it comes); for older checkpoints, their voxel size's."""
        if "pixel_size" in (self.training or {}):
            recorded = self.training["pixel_size"]
            return None if recorded is None else float(recorded)
        return in_plane(self.voxel_size)

    def build_model(self) -> UNet:
        model = UNet(self.model_config)
        model.load_state_dict(self.state_dict)
        return model

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "emda_version": self.emda_version,
            "model_config": self.model_config.to_dict(),
            "state_dict": self.state_dict,
            "normalization": {
                "lower_percentile": self.normalization.lower_percentile,
                "upper_percentile": self.normalization.upper_percentile,
                "source_low": self.source_range.low,
                "source_high": self.source_range.high,
            },
            "voxel_size": list(self.voxel_size) if self.voxel_size else None,
            "method": self.method,
            "method_options": self.method_options,
            "iteration": self.iteration,
            "training": self.training,
            "heads": self.heads,
        }


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Write to a temporary sibling, fsync, then rename: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> None:
    atomic_torch_save(checkpoint.to_dict(), path)


def load_raw(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load with weights_only=True and one-line errors for every failure."""
    from emda.pretrained import resolve

    path = resolve(path)  # emda:NAME, a shipped model
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise EmdaError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise EmdaError(
                f"{path}: refused to load: the file contains objects that could run code "
                f"(only plain weights are accepted)"
            ) from None
        raise EmdaError(f"{path}: not a valid checkpoint ({first})") from None
    except Exception as exc:  # torch.load fails in many ways on files that are not its own
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmdaError(f"{path}: corrupted or truncated checkpoint ({first})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EmdaError(f"{path}: not an emda checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise EmdaError(
            f"{path}: checkpoint format {data.get('format_version')} written by emda "
            f"{data.get('emda_version')} cannot be read by emda {__version__} "
            f"(format {FORMAT_VERSION})"
        )
    return data


def _as_float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Shipped models store float16 weights; training and the checks expect float32."""
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    data = load_raw(path)
    try:
        norm = data["normalization"]
        checkpoint = Checkpoint(
            model_config=UNetConfig(**data["model_config"]),
            state_dict=_as_float32(data["state_dict"]),
            normalization=Normalization(norm["lower_percentile"], norm["upper_percentile"]),
            source_range=IntensityRange(norm["source_low"], norm["source_high"]),
            voxel_size=tuple(data["voxel_size"]) if data.get("voxel_size") else None,
            method=data["method"],
            method_options=data.get("method_options", {}),
            iteration=data.get("iteration", 0),
            training=data.get("training", {}),
            heads=data.get("heads", {}),
            emda_version=data.get("emda_version", "unknown"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EmdaError(f"{path}: incomplete emda checkpoint (missing {exc})") from None
    check_weights(checkpoint, path)
    return checkpoint


def check_weights(checkpoint: Checkpoint, path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose network is implausibly large, whose stored configuration
    does not describe its weights, or whose weights are not finite."""
    config = checkpoint.model_config
    if config.depth > MAX_DEPTH or max(config.base_channels, config.in_channels,
                                       config.out_channels) > MAX_CHANNELS:  # fmt: skip
        raise EmdaError(f"{path}: its network (depth {config.depth}, {config.base_channels} "
                        "channels) is larger than any emda model; refused")  # fmt: skip
    with torch.device("meta"):  # shapes only: nothing allocated
        expected = {k: tuple(v.shape) for k, v in UNet(config).state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in checkpoint.state_dict.items()
              if isinstance(v, torch.Tensor)}  # fmt: skip
    if stored != expected:
        wrong = sorted(set(stored) ^ set(expected)) or [
            k for k in expected if stored[k] != expected[k]
        ]
        raise EmdaError(f"{path}: the stored network configuration does not match its "
                        f"weights (first difference: {wrong[0]})")  # fmt: skip
    check_state_dict(checkpoint.state_dict, str(path))
