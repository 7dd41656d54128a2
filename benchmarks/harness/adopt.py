"""A finished ``emda adapt`` run made elsewhere (a GPU machine) taken in as a row's model."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from harness import paths
from harness.config import (
    KEYED_WITHOUT_OPTIONS,
    PROFILES,
    Direction,
    config_key,
    method_options,
    option_changes,
)
from harness.running import finished


def adopt(
    profile: str, direction: Direction, method: str, seed: int, run: Path, opt: list[str] = ()
) -> Path:
    """Reuse a finished ``emda adapt`` run made elsewhere as this harness's trained model,
    after checking that every setting it recorded is the one the harness would use."""
    import shutil
    import tomllib

    p = PROFILES[profile]
    options = method_options(method, list(opt))
    if not finished(run):
        sys.exit(f"{run}: not a finished run")
    got = tomllib.loads((run / "config.toml").read_text())["adapt"]
    src, tr = direction.source, direction.target_train
    want = {
        "method": method, "iterations": p["iterations"], "batch_size": p["batch_size"],
        "patch_size": p["patch_size"], "seed": seed, "base_channels": p["base_channels"],
        "depth": 4, "lr": 1e-3, "lr_schedule": "cosine", "augment": True,
        "intensity_jitter": 0.1, "sharpness": 0.0, "noise": 0.0, "amplitude_mix": 0.0,
        "smooth_objects": 0.0, "seg_loss": "bce_dice",
        "lower_percentile": 1.0, "upper_percentile": 99.0, "target_bn": False,
        "average_weights": 0.0,  # the harness's rows average only with run --average-weights
        "source": src.raw, "source_labels": src.labels, "source_z": src.z,
        "target": None if method == "ft" else tr.raw,
        "target_z": None if method == "ft" else tr.z,
        "opt": options,
    }  # fmt: skip
    # older runs lack these
    defaults = {
        "sharpness": 0.0,
        "noise": 0.0,
        "amplitude_mix": 0.0,
        "smooth_objects": 0.0,
        "target_bn": False,
        "average_weights": 0.0,
    }
    path_fields = {"source", "source_labels", "target"}
    for name, value in want.items():
        have = got.get(name, defaults.get(name))
        if name == "opt":  # options added since the run was made had their first value
            have = {**KEYED_WITHOUT_OPTIONS.get(method, {}), **(have or {})}
        if name in path_fields and have is not None and value is not None:
            have, value = str((paths.REPO / have).resolve()), str((paths.REPO / value).resolve())
        if have != value:
            sys.exit(f"{run}: {name} is {have!r}, the harness uses {value!r}; not adopted")
    config = {"profile": profile, **p, "direction": asdict(direction), "method": method,
              "seed": seed, "semi_fraction": None, "harness": 2}  # fmt: skip
    if changes := option_changes(method, options):
        config["opt"] = changes
    dest = paths.HERE / "work" / profile / config_key(config) / "run"
    if finished(dest):
        sys.exit(f"{dest}: the harness already has this run")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run, dest, dirs_exist_ok=True)
    (dest.parent / "log.txt").open("a").write(f"adopted {run.resolve()}\n")
    return dest
