"""What decides a row's result: its profile, direction, method options, augmentation and
precision; the row's key is a hash of them, so a change of emda's defaults never
silently changes a recorded row."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass

PROFILES = {
    # the bundled crops, a few steps: checks the harness itself in seconds
    "smoke": {
        "data": "crops",
        "iterations": 4,
        "batch_size": 2,
        "patch_size": 64,
        "base_channels": 4,
        "finetune_iterations": 2,
        "tile_size": 128,
    },
    # ~25 min per method on 2 CPU cores (FT: 1500 x 0.7 s)
    "cpu": {
        "data": "shared",
        "iterations": 1500,
        "batch_size": 8,
        "patch_size": 128,
        "base_channels": 16,
        "finetune_iterations": 500,
        "tile_size": 256,
    },
    # closer to the paper: 4x larger patches, twice the batch and iterations (16x the
    # pixels seen in training); every method of one direction runs side by side on one
    # GPU (benchmarks/gpu_profile.sh), sized to fit a 15-minute lease of an H100
    "gpu": {
        "data": "shared",
        "iterations": 3000,
        "batch_size": 16,
        "patch_size": 256,
        "base_channels": 16,
        "finetune_iterations": 1000,
        "tile_size": 512,
    },
}

# selftrain's teacher is another row of the table, named by its method (`--opt
# teacher=ynet`): the harness trains that row first, same direction and seed, and
# hands its target-BN model over. Fixed before any selftrain result existed: Y-Net,
# the paper's own proposal and the row with three seeds in both directions.
# `teacher=selftrain` is a second round: the default selftrain row teaches.
SELFTRAIN_TEACHER = "ynet"

# how a row's trained models are scored; rows that differ in these share the models
SCORING = {"planes", "tta", "predict_precision"}

PAPER = {"ft": 28.70, "mmd": 44.96, "coral": 40.28, "dann": 49.90, "ynet": 49.55}
DA_ISC_VNC_TO_LUCCHI = 68.65  # the later anchor for VNC -> EPFL

# The method options every row had before options entered the key. A row whose
# options differ from these (by --opt, or because a default changed since) records the
# difference under "opt" in its configuration, so it gets its own key, never an old run.
KEYED_WITHOUT_OPTIONS = {
    "ft": {},
    "mmd": {"lambdas": [0.0, 0.0, 0.1, 0.3, 1.0], "samples": 256},
    "coral": {"lambdas": [0.0, 0.0, 10.0, 30.0, 100.0], "samples": 256},
    "dann": {"lambdas": [0.0, 0.0, 0.01, 0.03, 0.1], "samples": 256, "hidden": 64,
             "gamma": 10.0, "schedule": True, "classifier": "position"},
    "ynet": {"lambda_source": 1.0, "lambda_target": 1.0},
    "meanteacher": {"lambda_consistency": 1.0, "ema": 0.99, "confidence": 0.9, "rampup": 0.25},
}  # fmt: skip


def method_options(method: str, assignments: list[str]) -> dict:
    """The options ``emda adapt --method METHOD --opt ...`` would train with."""
    from emda.errors import EmdaError
    from emda.methods.options import options_to_dict
    from emda.training.adapt import resolve_method

    if method in RETIRED_METHODS:  # its recorded rows stay in the table; none can train
        if assignments:
            sys.exit(f"error: method '{method}' was removed from emda; its rows cannot be rerun")
        return dict(RETIRED_METHODS[method])
    try:
        options = options_to_dict(resolve_method(method, assignments).options)
    except EmdaError as exc:
        sys.exit(f"error: {exc}")  # it names the option and the method
    # an option emda no longer has, at the value its rows trained with: kept in the key
    return {**options, **RETIRED_OPTIONS.get(method, {})}


# Options emda removed, with the value that is now the method's only behaviour: rows
# keep them in their key (so recorded rows keep their keys) but emda is never given them.
RETIRED_OPTIONS = {"dann": {"classifier": "conv", "condition": "none"}}
# Methods emda removed, with the options their recorded rows trained with.
RETIRED_METHODS = {"outadv": {"weight": 0.1, "width": 32, "gamma": 10.0, "schedule": True}}


# training augmentation a row may change with `run --augment NAME=VALUE`; every other row
# trains with `emda adapt`'s defaults, the protocol's "same augmentation for every method"
AUGMENT_NAMES = ("intensity_jitter", "noise", "amplitude_mix")
# amplitude_mix needs the unlabelled target beside the source: `emda adapt` only, never
# the finetuning on target labels
ADAPT_ONLY = {"amplitude_mix"}


def augment_changes(assignments: list[str]) -> dict:
    """The augmentation settings given that differ from ``emda adapt``'s defaults."""
    from emda.training.config import TrainConfig

    defaults, changes = TrainConfig(), {}
    for text in assignments:
        name, sep, value = (part.strip() for part in text.partition("="))
        name = name.replace("-", "_")
        if not sep or name not in AUGMENT_NAMES:
            sys.exit(f"error: --augment {text!r}: expected NAME=VALUE, NAME one of "
                     f"{', '.join(AUGMENT_NAMES)}")  # fmt: skip
        try:
            number = float(value)
        except ValueError:
            sys.exit(f"error: --augment {text!r}: {value!r} is not a number")
        if number != getattr(defaults, name):
            changes[name] = number
    return changes


# What a profile's rows computed in before --precision existed: emda's default then,
# float16 autocast on CUDA (training and prediction), float32 on the CPU. Rows in
# another precision record it in their key.
RECORDED_PRECISION = {"gpu": "float16"}


def recorded_precision(profile: str) -> str:
    return RECORDED_PRECISION.get(profile, "float32")


def row_precision(config: dict, scoring: bool = False) -> str:
    """The precision a row trains in (``scoring``: predicts in)."""
    trained = config.get("precision", recorded_precision(config["profile"]))
    return config.get("predict_precision", trained) if scoring else trained


def precision_flags(config: dict) -> list[str]:
    """``--precision`` for training: always given, so a change of emda's default never
    changes what a recorded row ran."""
    return ["--precision", row_precision(config)]


def augment_flags(config: dict, finetune: bool = False) -> list[str]:
    """``emda adapt`` (or ``finetune``) arguments for a row's non-default augmentation."""
    flags = []
    for name, value in config.get("augment", {}).items():
        if not (finetune and name in ADAPT_ONLY):
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


# the row of `emda adapt` without --method: the default recipe, every stage in one run
RECIPE = "recipe"


def row_options(method: str, assignments: list[str]) -> dict:
    """A row's method options: ``emda adapt``'s, with selftrain's teacher filled in."""
    if method == RECIPE:
        if assignments:
            sys.exit("error: the recipe row takes no --opt (its stages carry their options)")
        return {}
    options = method_options(method, assignments)
    if method == "selftrain" and not options["teacher"]:
        options["teacher"] = SELFTRAIN_TEACHER
    return options


# Options a method gained after its rows were keyed with all their options, with the
# value those rows trained with: left out of the key while they keep it, so old rows
# keep their keys.
OPTIONS_ADDED_LATER = {
    "selftrain": {"pseudo_labels": "patch", "balance": "none"},
    "dann": {"condition": "none"},
}


def option_changes(method: str, options: dict) -> dict:
    """The options that differ from those of the rows keyed without options."""
    before = KEYED_WITHOUT_OPTIONS.get(method, {})
    added = OPTIONS_ADDED_LATER.get(method, {})
    return {
        k: v
        for k, v in options.items()
        if before.get(k) != v and not (k in added and added[k] == v)
    }


def opt_flags(method: str, options: dict) -> list[str]:
    """``--opt`` arguments that set every option explicitly, whatever the defaults are."""
    flags = []
    for name, value in options.items():
        if name in RETIRED_OPTIONS.get(method, {}):  # in the key, but emda has no such option
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        flags += ["--opt", f"{name}={text}"]
    return flags


@dataclass(frozen=True)
class Split:
    raw: str
    labels: str | None = None
    z: str | None = None


@dataclass(frozen=True)
class Direction:
    name: str
    source: Split  # labelled
    target_train: Split  # raw only for adaptation; its labels only for the semi rows
    target_test: Split


def directions(data_kind: str) -> dict[str, Direction]:
    # paths relative to the repository (emda runs with cwd=REPO), so that a run's key
    # does not depend on where the checkout lives (a fresh clone, a GPU machine)
    if data_kind == "crops":
        d = "emda/demo_data"
        epfl_tr = Split(f"{d}/epfl_train/raw.tif", f"{d}/epfl_train/labels.tif")
        epfl_te = Split(f"{d}/epfl_test/raw.tif", f"{d}/epfl_test/labels.tif")
        vnc, vnc_lab = f"{d}/vnc/raw.tif", f"{d}/vnc/labels.tif"
        vnc_tr, vnc_te = Split(vnc, vnc_lab, "0:8"), Split(vnc, vnc_lab, "8:12")
    else:
        d = "../shared/data"
        epfl_tr = Split(f"{d}/epfl_lucchi_pp/train/raw.tif", f"{d}/epfl_lucchi_pp/train/labels.tif")
        epfl_te = Split(f"{d}/epfl_lucchi_pp/test/raw.tif", f"{d}/epfl_lucchi_pp/test/labels.tif")
        vnc, vnc_lab = f"{d}/drosophila_vnc/raw.tif", f"{d}/drosophila_vnc/labels.tif"
        # the original Y-Net code's 0.67 split along z
        vnc_tr, vnc_te = Split(vnc, vnc_lab, "0:13"), Split(vnc, vnc_lab, "13:20")
    return {
        "epfl2vnc": Direction("epfl2vnc", epfl_tr, vnc_tr, vnc_te),
        "vnc2epfl": Direction("vnc2epfl", vnc_tr, epfl_tr, epfl_te),
        # the in-domain check: source-only model on the source's own test volume
        "epfl2epfl": Direction("epfl2epfl", epfl_tr, epfl_tr, epfl_te),
    }


def config_key(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def row_config(
    profile: str, direction: Direction, method: str, seed: int, semi: float | None,
    planes: str, options: dict, tta: bool = False, augment: dict | None = None,
    match_sharpness: bool = False, target_planes: str = "xy", average_weights: float = 0.0,
    precision: str | None = None, predict_precision: str | None = None,
) -> dict:  # fmt: skip
    """Everything that decides a row's result; its hash is the row's key."""
    config = {
        "profile": profile,
        **PROFILES[profile],
        "direction": asdict(direction),
        "method": method,
        "seed": seed,
        "semi_fraction": semi,
        "harness": 2,  # 2: every row scored as trained and with target batch-norm statistics
    }
    if planes != "xy":  # slice-wise rows keep the keys they had before --planes existed
        config["planes"] = planes
    if tta:  # likewise: only rows scored with `emda predict --tta` record it
        config["tta"] = True
    if changes := option_changes(method, options):
        config["opt"] = changes
    if augment:  # rows with the default augmentation keep the keys they had before
        config["augment"] = augment
    if match_sharpness:  # its direction's paths name the blurred volume too
        config["match_sharpness"] = True
    if target_planes != "xy":  # `emda adapt --target-planes`; xy rows keep their keys
        config["target_planes"] = target_planes
    if average_weights:  # `emda adapt --average-weights`; rows without it keep their keys
        config["average_weights"] = average_weights
    precision = precision or recorded_precision(profile)
    if precision != recorded_precision(profile):  # rows as recorded keep their keys
        config["precision"] = precision
    if predict_precision not in (None, precision):  # scoring alone: the models are shared
        config["predict_precision"] = predict_precision
    if method == RECIPE:  # what `emda adapt` runs without --method today
        from emda.training.recipe import DEFAULT_RECIPE

        config["recipe"] = DEFAULT_RECIPE.to_dict()
    return config
