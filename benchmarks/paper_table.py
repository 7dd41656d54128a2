"""Regenerate Roels et al.'s table (IoU on the target test set) with emda's CLI.

    python benchmarks/paper_table.py run    --profile cpu [--directions ...] [--methods ...]
                                            [--seeds 0,1,2] [--semi 0.15] [--opt NAME=VALUE]
                                            [--augment NAME=VALUE] [--tta]
                                            [--ensemble]
    python benchmarks/paper_table.py report --profile cpu
    python benchmarks/paper_table.py adopt  --profile cpu --directions D --methods M --seeds S RUN

Every run is keyed by a hash of its full configuration; its result lands in
``benchmarks/results/<profile>/runs/<key>.json`` and a rerun skips keys that
already have a result, so an interrupted benchmark picks up where it stopped.
Work files (checkpoints, predictions) go to ``benchmarks/work/<profile>/<key>/``.

Protocol (benchmarks/README.md): no target-test label is used for any choice;
every method gets the same network, patch size, batch, iteration budget and
augmentation; the last checkpoint is scored (no selection) at threshold 0.5.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EMDA = [sys.executable, "-m", "emda"]

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
AUGMENT_NAMES = ("intensity_jitter", "noise", "gamma", "blur", "amplitude_mix")
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


def emda(*args: str, log: Path) -> float:
    """Run one emda command, its output appended to ``log``; the wall time in seconds."""
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write("$ emda " + " ".join(args) + "\n")
        fh.flush()
        done = subprocess.run([*EMDA, *args], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"emda {args[0]} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - t0


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


def _adapted_dir(config: dict) -> Path:
    """Work directory of a row's adapted model, shared by the unsupervised and the
    semi-supervised rows and by every scoring choice (``--planes``, ``--tta``)."""
    trained = {k: v for k, v in config.items() if k not in SCORING}
    return HERE / "work" / config["profile"] / config_key({**trained, "semi_fraction": None})


def adapted_models(
    config: dict, direction: Direction, options: dict, times: dict[str, float]
) -> tuple[Path, Path]:
    """A row's trained model and the same with target batch-norm statistics, trained
    here unless the work directory has them; seconds spent go into ``times``."""
    p, method, seed = PROFILES[config["profile"]], config["method"], config["seed"]
    adapted = _adapted_dir(config)
    adapted.mkdir(parents=True, exist_ok=True)
    trained, recalibrated = adapted / "run", adapted / "run_target_bn"
    src, tr = direction.source, direction.target_train
    target_z = ["--target-z", tr.z] if tr.z else []
    log = adapted / "log.txt"
    if method == RECIPE:  # the product's one command; its stages end with target BN
        if not _finished(trained):
            resume = "--resume" if (trained / "recipe.json").exists() else "--overwrite"
            adapt = ["adapt", "--source", src.raw, "--source-labels", src.labels,
                     "--target", tr.raw, *target_z, "--out", str(trained),
                     "--base-channels", str(p["base_channels"]), "--iterations",
                     str(p["iterations"]), "--batch-size", str(p["batch_size"]),
                     "--patch-size", str(p["patch_size"]), "--seed", str(seed), "--quiet",
                     resume, *augment_flags(config), *precision_flags(config)]  # fmt: skip
            adapt += ["--source-z", src.z] if src.z else []
            times["adapt"] = emda(*adapt, log=log)
        return trained, trained
    if not _finished(trained):
        if method == "selftrain":  # the teacher row's model first (its score is not needed)
            name = options["teacher"]
            # a selftrain teacher (round one) has the default teacher and the same kind of
            # pseudo-labels as this row, so rows recorded with patch keep a patch teacher
            kind = options.get("pseudo_labels")
            same_kind = [f"pseudo_labels={kind}"] if kind in ("patch", "volume") else []
            teacher_options = row_options(name, same_kind if name == "selftrain" else [])
            teacher = row_config(config["profile"], direction, name, seed, None, "xy",
                                 teacher_options, augment=config.get("augment"),
                                 match_sharpness=config.get("match_sharpness", False),
                                 precision=row_precision(config))  # fmt: skip
            spent: dict[str, float] = {}
            _, teacher_run = adapted_models(teacher, direction, teacher_options, spent)
            times.update({f"teacher_{k}": v for k, v in spent.items()})
            options = {**options, "teacher": str(teacher_run.relative_to(REPO))}
        adapt = ["adapt", "--source", src.raw, "--source-labels", src.labels, "--method", method,
                 "--base-channels", str(p["base_channels"]), "--iterations", str(p["iterations"]),
                 "--out", str(trained), "--no-target-bn", *opt_flags(method, options),
                 "--batch-size", str(p["batch_size"]), "--patch-size", str(p["patch_size"]),
                 "--seed", str(seed), "--quiet", _restart_or_resume(trained),
                 *augment_flags(config), *precision_flags(config)]  # fmt: skip
        adapt += ["--source-z", src.z] if src.z else []
        adapt += ["--target-planes", config["target_planes"]] if "target_planes" in config else []
        # always given: a method's own default (DANN's 0.5) must not change a recorded row
        adapt += ["--average-weights", str(config.get("average_weights", 0.0))]
        # ft never sees the target: the paper's source-only baseline
        adapt += [] if method == "ft" else ["--target", tr.raw, *target_z]
        times["adapt"] = emda(*adapt, log=log)
    if not _finished(recalibrated):
        times["recalibrate"] = emda("recalibrate", str(trained), "--target", tr.raw, *target_z,
                                    "--out", str(recalibrated), "--overwrite", log=log)  # fmt: skip
    return trained, recalibrated


def predict_and_score(
    model: Path, test: Split, tile_size: int, log: Path, planes: str = "xy", tta: bool = False,
    precision: str = "float32", tagged: bool = False,
) -> tuple[dict, Path, float]:  # fmt: skip
    """``emda predict`` a model's probability map of the test volume next to the model,
    then ``emda evaluate`` it on the test range: the scores, the map's path and the
    prediction's seconds."""
    tag = ("" if planes == "xy" else f"_{planes}") + ("_tta" if tta else "")
    tag += f"_{precision}" if tagged else ""  # beside the row's own prediction
    prob = model.parent / f"{model.name}{tag}_prob.tif"
    seconds = emda("predict", str(model), test.raw, "--output", str(prob),
                   "--tile-size", str(tile_size), "--quiet", "--planes", planes,
                   "--overwrite", *(["--tta"] if tta else []), "--precision", precision,
                   log=log)  # fmt: skip
    scores = model.parent / f"{model.name}{tag}_scores.json"
    evaluate = ["evaluate", str(prob), "--labels", test.labels, "--json", str(scores),
                "--overwrite"]  # fmt: skip
    evaluate += ["--z-range", test.z] if test.z else []
    emda(*evaluate, log=log)
    (result,) = json.loads(scores.read_text())
    return result, prob, seconds


def run_one(
    profile: str, direction: Direction, method: str, seed: int, semi: float | None,
    planes: str = "xy", opt: list[str] = (), tta: bool = False, augment: list[str] = (),
    target_planes: str = "xy", average_weights: float = 0.0, precision: str | None = None,
    predict_precision: str | None = None,
) -> dict:  # fmt: skip
    """One row of the table: adapt (training only), then the same model with target
    batch-norm statistics (``emda recalibrate``, the step ``emda adapt`` ends with by
    default), each scored on the target test set; ``semi`` finetunes the latter on that
    fraction of the target training labels and scores the result. ``planes``: ``emda
    predict --planes``; the trained models are shared by every choice. ``opt``: ``emda
    adapt --opt`` assignments for the method. ``tta``: ``emda predict --tta`` (8
    flips/rotations averaged), again on the same models. ``augment``: training
    augmentation other than ``emda adapt``'s default (``noise=0.1``), for the row's
    training, its teacher's and its finetuning alike. ``target_planes``: ``emda adapt
    --target-planes`` for the row's training (not its teacher's); ``average_weights``
    likewise ``emda adapt --average-weights``. ``precision``: ``--precision`` of every
    command of the row; ``predict_precision``: of its scored predictions alone (the
    models are shared with the row trained in ``precision``)."""
    options = row_options(method, list(opt))
    config = row_config(profile, direction, method, seed, semi, planes, options, tta,
                        augment_changes(list(augment)), False,
                        target_planes, average_weights, precision, predict_precision)  # fmt: skip
    key = config_key(config)
    result_path = HERE / "results" / profile / "runs" / f"{key}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    p = PROFILES[profile]
    train = ["--batch-size", str(p["batch_size"]), "--patch-size", str(p["patch_size"]),
             "--seed", str(seed), "--quiet", *augment_flags(config, finetune=True)]  # fmt: skip
    tr, te = direction.target_train, direction.target_test
    target_z = ["--target-z", tr.z] if tr.z else []
    times: dict[str, float] = {}
    trained, recalibrated = adapted_models(config, direction, options, times)
    adapted = trained.parent
    log = adapted / "log.txt"
    if semi:
        work = adapted / f"semi{semi}"
        work.mkdir(exist_ok=True)
        ft = ["finetune", str(recalibrated), "--target", tr.raw, "--target-labels", tr.labels,
              "--fraction", str(semi), "--out", str(work / "run"), *train, *target_z,
              _restart_or_resume(work / "run"),
              "--iterations", str(p["finetune_iterations"]), *precision_flags(config)]  # fmt: skip
        if not _finished(work / "run"):  # shared by the rows that differ in scoring only
            times["finetune"] = emda(*ft, log=log)
        scored = {"scores": work / "run"}
    elif method == RECIPE:  # one model: every stage ended with target batch norm
        scored = {"scores": recalibrated}
    else:
        scored = {"scores_as_trained": trained, "scores": recalibrated}
    result = {"key": key, "config": config}
    if method == RECIPE:  # the stages as run: status, iterations, seconds, target statistics
        result["recipe"] = json.loads((trained / "recipe.json").read_text())["stages"]
    for field, model in scored.items():
        result[field], _, times[f"predict_{model.name}"] = predict_and_score(
            model,
            te,
            p["tile_size"],
            log,
            planes,
            tta,
            row_precision(config, scoring=True),
            "predict_precision" in config,
        )
    from emda import __version__

    result.update(seconds=times, emda_version=__version__, trained_with=_trained_with(trained))
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2))
    return result


def ensemble_row(members: list[dict]) -> dict:
    """The seed-ensemble row of finished rows that differ in their seed only: ``emda
    ensemble`` averages their probability maps (as trained and with target BN alike),
    scored like any row. Its config is theirs with ``seed: None`` and the seeds listed."""
    first = members[0]["config"]
    same = [{**r["config"], "seed": None} == {**first, "seed": None} for r in members]
    if not all(same) or len(members) < 2:
        sys.exit("an ensemble row needs two or more rows that differ in their seed only")
    seeds = sorted(r["config"]["seed"] for r in members)
    config = {**first, "seed": None, "ensemble_seeds": seeds}
    key = config_key(config)
    profile = config["profile"]
    result_path = HERE / "results" / profile / "runs" / f"{key}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    work = HERE / "work" / profile / key
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    test = config["direction"]["target_test"]
    result: dict = {"key": key, "config": config, "members": [r["key"] for r in members]}
    times: dict[str, float] = {}
    for field in ("scores_as_trained", "scores"):
        if not all(field in r for r in members):
            continue
        inputs = [_prediction(r, profile, field) for r in members]
        if missing := [str(p) for p in inputs if not p.exists()]:
            sys.exit(f"ensemble {key}: member predictions not on disk: {', '.join(missing)}")
        prob = work / inputs[0].name
        average = ["ensemble", *map(str, inputs), "--output", str(prob), "--overwrite", "--quiet"]
        times[f"ensemble_{prob.stem}"] = emda(*average, log=log)
        scores = work / prob.name.replace("_prob.tif", "_scores.json")
        evaluate = ["evaluate", str(prob), "--labels", test["labels"], "--json", str(scores),
                    "--overwrite"]  # fmt: skip
        evaluate += ["--z-range", test["z"]] if test["z"] else []
        emda(*evaluate, log=log)
        (result[field],) = json.loads(scores.read_text())
    from emda import __version__

    result.update(seconds=times, emda_version=__version__)
    result_path.write_text(json.dumps(result, indent=2))
    return result


def _trained_with(run: Path) -> dict:
    """torch version, CPU threads, vector instructions and any oneDNN instruction cap the
    row's model trained with (a rerun repeats the result bit for bit only with all of
    them the same); empty for runs older than the record."""
    from emda.model.checkpoint import load_checkpoint

    training = load_checkpoint(run).training
    keys = ("torch_version", "cpu_threads", "cpu_capability", "onednn_max_cpu_isa")
    return {k: training[k] for k in keys if k in training}


def adopt(
    profile: str, direction: Direction, method: str, seed: int, run: Path, opt: list[str] = ()
) -> Path:
    """Reuse a finished ``emda adapt`` run made elsewhere as this harness's trained model,
    after checking that every setting it recorded is the one the harness would use."""
    import shutil
    import tomllib

    p = PROFILES[profile]
    options = method_options(method, list(opt))
    if not _finished(run):
        sys.exit(f"{run}: not a finished run")
    got = tomllib.loads((run / "config.toml").read_text())["adapt"]
    src, tr = direction.source, direction.target_train
    want = {
        "method": method, "iterations": p["iterations"], "batch_size": p["batch_size"],
        "patch_size": p["patch_size"], "seed": seed, "base_channels": p["base_channels"],
        "depth": 4, "lr": 1e-3, "lr_schedule": "cosine", "augment": True,
        "intensity_jitter": 0.1, "sharpness": 0.0, "noise": 0.0, "amplitude_mix": 0.0,
        "gamma": 0.0, "blur": 0.0,
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
        "gamma": 0.0,
        "blur": 0.0,
        "amplitude_mix": 0.0,
        "smooth_objects": 0.0,
        "target_bn": False,
        "average_weights": 0.0,
    }
    paths = {"source", "source_labels", "target"}
    for name, value in want.items():
        have = got.get(name, defaults.get(name))
        if name == "opt":  # options added since the run was made had their first value
            have = {**KEYED_WITHOUT_OPTIONS.get(method, {}), **(have or {})}
        if name in paths and have is not None and value is not None:
            have, value = str((REPO / have).resolve()), str((REPO / value).resolve())
        if have != value:
            sys.exit(f"{run}: {name} is {have!r}, the harness uses {value!r}; not adopted")
    config = {"profile": profile, **p, "direction": asdict(direction), "method": method,
              "seed": seed, "semi_fraction": None, "harness": 2}  # fmt: skip
    if changes := option_changes(method, options):
        config["opt"] = changes
    dest = HERE / "work" / profile / config_key(config) / "run"
    if _finished(dest):
        sys.exit(f"{dest}: the harness already has this run")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run, dest, dirs_exist_ok=True)
    (dest.parent / "log.txt").open("a").write(f"adopted {run.resolve()}\n")
    return dest


def _local(path: str) -> Path:
    """A work file recorded on another checkout (a GPU machine), found in this one."""
    at = path.find("benchmarks/work/")
    return REPO / path[at:] if at >= 0 else Path(path)


def _prediction(result: dict, profile: str, field: str = "scores") -> Path:
    """The prediction a result scored (``field``; by default the target-BN one): in its
    key's work directory, where runs that were made elsewhere and adopted, or re-keyed
    by a harness change, keep it too."""
    recorded = _local(result[field]["prediction"])
    here = HERE / "work" / profile / result["key"] / recorded.name
    return here if here.exists() else recorded


def _restart_or_resume(run: Path) -> str:
    """Training that was interrupted (Ctrl-C saves ``state.pt``) continues where it stopped."""
    return "--resume" if (run / "state.pt").exists() else "--overwrite"


def _finished(run: Path) -> bool:
    return (run / "checkpoint.pt").exists() and not (run / "state.pt").exists()


def load_results(profile: str) -> list[dict]:
    return [
        json.loads(f.read_text())
        for f in sorted((HERE / "results" / profile / "runs").glob("*.json"))
    ]


# the paper's Figure 4 compares these; a panel per method would not fit a page
QUALITATIVE_METHODS = ("ft", "dann", "ynet")

DIRECTION_TITLES = {
    "epfl2vnc": "EPFL -> VNC",
    "vnc2epfl": "VNC -> EPFL",
    "epfl2epfl": "in-domain EPFL",
}


def report(profile: str) -> str:
    """table.md (mean +- std IoU % over seeds) plus bars.png, fraction_curve.png and
    qualitative_<direction>.png in ``benchmarks/results/<profile>/``."""
    import numpy as np

    results = load_results(profile)
    rows: dict[tuple, dict[str, list[float]]] = {}
    for r in results:
        c = r["config"]
        row = rows.setdefault((c["direction"]["name"], row_setting(c), row_label(c)), {})
        row["averaged"] = len(c.get("ensemble_seeds") or [])
        for field in ("scores_as_trained", "scores"):
            if field in r:
                row.setdefault(field, []).append(100 * r[field]["iou"])

    def cell(values: list[float] | None) -> str:
        if not values:
            return ""
        std = f" +- {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
        return f"{np.mean(values):.1f}{std}"

    lines = [
        "| direction | setting | method | IoU % as trained | IoU % + target BN (default) "
        "| seeds | paper |",
        "|---|---|---|---|---|---|---|",
    ]
    for (direction, setting, method), row in sorted(
        rows.items(), key=lambda kv: (kv[0][0], _label_share(kv[0][1]), _method_order(kv[0][2]))
    ):
        paper_row = (direction, setting) == ("epfl2vnc", "unsupervised")
        paper = PAPER.get(method.split()[0], "") if paper_row else ""
        seeds = len(row.get("scores", []))
        seeds = f"{row['averaged']} averaged" if row["averaged"] else seeds
        lines.append(
            f"| {DIRECTION_TITLES.get(direction, direction)} | {setting} | {method} | "
            f"{cell(row.get('scores_as_trained'))} | {cell(row.get('scores'))} | {seeds} | "
            f"{paper} |"
        )
    lines.append(f"| VNC -> EPFL | unsupervised | DA-ISC (later anchor) | | | | "
                 f"{DA_ISC_VNC_TO_LUCCHI} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    out = HERE / "results" / profile
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    if results:
        _figures(results, {k: v.get("scores", []) for k, v in rows.items()}, out)
    if profile != "smoke":
        _update_readme(profile, table, out)
    return table


METHOD_ORDER = ("ft", "mmd", "coral", "dann", "ynet", "meanteacher", "selftrain")


def _method_order(label: str) -> tuple:
    """Sort key of a row label: the paper's methods in its order, then emda's additions;
    a variant ("dann (classifier=position)") right after its method."""
    method = label.split()[0]
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else 99, label)


def row_setting(config: dict) -> str:
    """The table's setting column: target labels used, then how the models were scored."""
    c = config
    setting = f"semi {c['semi_fraction']:.0%}" if c["semi_fraction"] else "unsupervised"
    setting += f", {c['planes']} planes" if "planes" in c else ""
    setting += ", tta" if c.get("tta") else ""
    setting += f", predicted in {c['predict_precision']}" if "predict_precision" in c else ""
    averaged = len(c.get("ensemble_seeds") or [])
    return setting + (f", {averaged}-seed ensemble" if averaged else "")


def row_label(config: dict) -> str:
    """A plain method name is what `emda adapt --method NAME` trains today; a variant
    names its options and augmentation that differ, e.g. "dann (classifier=position)"."""
    changed = {**_non_defaults(config), **config.get("augment", {})}
    for name in ("target_planes", "average_weights", "precision"):
        if name in config:
            changed[name] = config[name]
    matched = " (matched sharpness)" if config.get("match_sharpness") else ""
    if "recipe" in config:  # its stages, so that two recipes make two rows
        total = config["iterations"]
        stages = ", ".join(
            f"{st['method']} {st.get('iterations') or round(st.get('share', 1.0) * total)}"
            for st in config["recipe"]["stages"]
        )
        return f"recipe ({stages})"
    return config["method"] + "".join(f" ({k}={v})" for k, v in changed.items()) + matched


def _non_defaults(config: dict) -> dict:
    """The options a row trained with that differ from its method's current defaults."""
    method = config["method"]
    # rows keyed before an option existed trained with its value then
    before = {**KEYED_WITHOUT_OPTIONS.get(method, {}), **OPTIONS_ADDED_LATER.get(method, {})}
    options = {**before, **config.get("opt", {})}
    return {k: v for k, v in options.items() if method_options(method, []).get(k) != v}


def _defaults(config: dict) -> bool:
    """Whether a row trained with its method's current default options and augmentation."""
    varied = {"augment", "match_sharpness", "target_planes", "average_weights", "precision"}
    return not _non_defaults(config) and not varied & config.keys()


def _label_share(setting: str) -> float:
    """Sort key of a setting: "unsupervised" first, then "semi 5%", "semi 15%", ... by share."""
    share = 0.0 if setting.startswith("unsupervised") else float(setting.split()[1].rstrip("%,"))
    return share + (0.5 if "," in setting else 0.0)  # after its plainly scored row


def _update_readme(profile: str, table: str, out: Path) -> None:
    """Put the table and links to the figures between the results page's markers."""
    readme = REPO / "docs" / "results.md"
    start, end = f"<!-- paper-table:{profile}:start -->", f"<!-- paper-table:{profile}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return
    rel = Path("..") / out.relative_to(REPO)
    figures = sorted(out.glob("*.png"))
    block = (
        f"{start}\n"
        f"<!-- generated by `python benchmarks/paper_table.py report --profile {profile}` -->\n"
        + table
        + "\n"
        + "".join(f"![{f.stem}]({rel / f.name})\n" for f in figures)
        + end
    )
    head, rest = text.split(start, 1)
    readme.write_text(head + block + rest.split(end, 1)[1])


def _figures(results: list[dict], rows: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # bars: unsupervised IoU per method and direction, the paper's next to EPFL -> VNC
    methods = sorted({m for (_, s, m) in rows if s == "unsupervised"}, key=_method_order)
    dirs = sorted({d for (d, s, _) in rows if s == "unsupervised" and d != "epfl2epfl"})
    fig, ax = plt.subplots(figsize=(max(8.0, 2.0 + 0.6 * len(methods)), 5))
    width = 0.8 / (len(dirs) + 1)
    x = np.arange(len(methods))
    for i, d in enumerate(dirs):
        vals = [rows.get((d, "unsupervised", m), []) for m in methods]
        ax.bar(
            x + i * width,
            [np.mean(v) if v else 0 for v in vals],
            width,
            label=f"emda {d}",
            yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals],
        )
    ax.bar(
        x + len(dirs) * width,
        [PAPER.get(m, 0) for m in methods],
        width,
        label="paper (EPFL -> VNC)",
        color="grey",
    )
    # slanted, so that the long labels of the variants do not overlap
    ax.set_xticks(x + width * len(dirs) / 2, methods, rotation=30, ha="right")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel("target test IoU (%), + target BN")
    ax.set_ylim(0, 80)  # room above the bars for the legend
    ax.legend(loc="upper left", ncols=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bars.png", dpi=100)
    plt.close(fig)

    # IoU against the fraction of target labels (the paper's Figure 3); 0 = unsupervised
    # slice-wise rows with the methods' current defaults only
    results = [
        r for r in results
        if not (SCORING | {"ensemble_seeds"}) & r["config"].keys() and _defaults(r["config"])
    ]  # fmt: skip
    curves: dict[tuple, dict[float, list[float]]] = {}
    for r in results:
        c = r["config"]
        curves.setdefault((c["direction"]["name"], c["method"]), {}).setdefault(
            c["semi_fraction"] or 0.0, []
        ).append(100 * r["scores"]["iou"])
    curves = {k: v for k, v in curves.items() if len(v) > 1}  # a lone point is no curve
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (d, m), by_fraction in sorted(curves.items()):
            fr = sorted(by_fraction)
            ax.plot(
                [100 * f for f in fr],
                [np.mean(by_fraction[f]) for f in fr],
                "o-",
                label=f"{m} ({d})",
            )
        ax.set_xlabel("target labels used (%)")
        ax.set_ylabel("target test IoU (%)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "fraction_curve.png", dpi=100)
        plt.close(fig)

    # qualitative: one target test slice, ground truth and each method's outline (seed 0)
    from emda.evaluation.plots import overlay
    from emda.io.volume import open_volume

    for d in dirs:
        chosen = {
            r["config"]["method"]: r
            for r in results
            if r["config"]["direction"]["name"] == d
            and r["config"]["method"] in QUALITATIVE_METHODS
            and not r["config"]["semi_fraction"]
            and r["config"]["seed"] == 0
            and _prediction(r, out.name).exists()
        }
        if not chosen:
            continue
        test = next(iter(chosen.values()))["config"]["direction"]["target_test"]
        start = int(test["z"].split(":")[0]) if test["z"] else 0
        z = start + 2
        preds = {
            f"{m} (IoU {100 * r['scores']['iou']:.1f})": open_volume(_prediction(r, out.name)).read(
                z
            )
            >= 128
            for m, r in sorted(chosen.items(), key=lambda kv: QUALITATIVE_METHODS.index(kv[0]))
        }
        overlay(
            open_volume(REPO / test["raw"]).read(z),
            open_volume(REPO / test["labels"]).read(z),
            preds,
            out / f"qualitative_{d}.png",
            title=f"{d}: target test slice z={z}",
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["run", "report", "adopt"])
    parser.add_argument("runs", nargs="*", type=Path, help="adopt: finished adapt run dir(s)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--directions", default="epfl2vnc,vnc2epfl")
    parser.add_argument("--methods", default="ft,mmd,coral,dann,ynet,meanteacher,selftrain")
    parser.add_argument("--seeds", default="0")
    parser.add_argument(
        "--semi",
        default="",
        help="also finetune on these fractions of target labels (e.g. 0.15 or 0.05,0.15,0.5,1)",
    )
    parser.add_argument(
        "--planes",
        choices=["xy", "ortho", "auto"],
        default="xy",
        help="run: `emda predict --planes` for the scored predictions (the models are shared)",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="run: `emda predict --tta` for the scored predictions (the models are shared)",
    )
    parser.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run/adopt: a method option (`emda adapt --opt`); rows that differ from the "
        "defaults get their own keys and table rows",
    )
    parser.add_argument(
        "--augment",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run: training augmentation other than emda adapt's default (intensity_jitter, "
        "noise, gamma, blur, amplitude_mix); such rows get their own keys and "
        "table rows",
    )
    parser.add_argument(
        "--target-planes",
        choices=["xy", "ortho"],
        default="xy",
        help="run: `emda adapt --target-planes` for the rows' training (not a teacher's); "
        "its own keys and table rows",
    )
    parser.add_argument(
        "--average-weights",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="run: `emda adapt --average-weights` for the rows' training (not a teacher's); "
        "its own keys and table rows",
    )
    parser.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="run: `--precision` of every command of the rows (default: what the profile's "
        "rows ran in, float32; float16 for gpu); its own keys and table rows",
    )
    parser.add_argument(
        "--predict-precision",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="run: `emda predict --precision` for the scored predictions alone (the models "
        "are shared)",
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="run: also score the mean of the --seeds rows' probability maps (emda "
        "ensemble), a row of its own",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="run: skip the report (for several runs side by side)",
    )
    args = parser.parse_intermixed_args()
    if not 0 <= args.average_weights <= 1:  # before any work directory is made
        sys.exit(f"error: --average-weights {args.average_weights}: must be in [0, 1]")
    if args.action == "adopt":  # one direction, method and seed
        (name,), (method,) = args.directions.split(","), args.methods.split(",")
        for run in args.runs:
            dest = adopt(args.profile, directions(PROFILES[args.profile]["data"])[name], method,
                         int(args.seeds), run, args.opt)  # fmt: skip
            print(f"adopted {run} as {dest}")
        return
    if args.action == "run":
        dirs = directions(PROFILES[args.profile]["data"])
        for name in args.directions.split(","):
            for method in args.methods.split(","):
                if name == "epfl2epfl" and method != "ft":
                    continue  # the in-domain check is the source-only model's
                finished: dict[float | None, list[dict]] = {}
                for seed in (int(s) for s in args.seeds.split(",")):
                    fractions = [float(f) for f in args.semi.split(",") if f]
                    fractions = [] if name == "epfl2epfl" else fractions
                    for semi in [None, *fractions]:
                        r = run_one(args.profile, dirs[name], method, seed, semi,
                                    args.planes, args.opt, args.tta, args.augment,
                                    args.target_planes, args.average_weights,
                                    args.precision, args.predict_precision)  # fmt: skip
                        finished.setdefault(semi, []).append(r)
                        print(
                            f"{name} {method} seed {seed} semi {semi}: "
                            f"IoU {r['scores']['iou']:.4f}",
                            flush=True,
                        )
                for semi, members in finished.items() if args.ensemble else ():
                    r = ensemble_row(members)
                    print(f"{name} {method} ensemble of seeds {args.seeds} semi {semi}: "
                          f"IoU {r['scores']['iou']:.4f}", flush=True)  # fmt: skip
        if args.no_report:
            return
    print(report(args.profile))


if __name__ == "__main__":
    main()
