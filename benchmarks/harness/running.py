"""A row trained, recalibrated, predicted and scored with emda's CLI; every step is
skipped when its output exists, so an interrupted benchmark resumes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from harness import paths
from harness.config import (
    PROFILES,
    RECIPE,
    SCORING,
    Direction,
    Split,
    augment_changes,
    augment_flags,
    config_key,
    opt_flags,
    precision_flags,
    row_config,
    row_options,
    row_precision,
)


def emda(*args: str, log: Path) -> float:
    """Run one emda command, its output appended to ``log``; the wall time in seconds."""
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write("$ emda " + " ".join(args) + "\n")
        fh.flush()
        done = subprocess.run(
            [*paths.EMDA, *args], cwd=paths.REPO, stdout=fh, stderr=subprocess.STDOUT
        )
    if done.returncode:
        sys.exit(f"emda {args[0]} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - t0


def adapted_dir(config: dict) -> Path:
    """Work directory of a row's adapted model, shared by the unsupervised and the
    semi-supervised rows and by every scoring choice (``--planes``, ``--tta``)."""
    trained = {k: v for k, v in config.items() if k not in SCORING}
    return paths.HERE / "work" / config["profile"] / config_key({**trained, "semi_fraction": None})


def adapted_models(
    config: dict, direction: Direction, options: dict, times: dict[str, float]
) -> tuple[Path, Path]:
    """A row's trained model and the same with target batch-norm statistics, trained
    here unless the work directory has them; seconds spent go into ``times``."""
    p, method, seed = PROFILES[config["profile"]], config["method"], config["seed"]
    adapted = adapted_dir(config)
    adapted.mkdir(parents=True, exist_ok=True)
    trained, recalibrated = adapted / "run", adapted / "run_target_bn"
    src, tr = direction.source, direction.target_train
    target_z = ["--target-z", tr.z] if tr.z else []
    log = adapted / "log.txt"
    if method == RECIPE:  # the product's one command; its stages end with target BN
        if not finished(trained):
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
    if not finished(trained):
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
            options = {**options, "teacher": str(teacher_run.relative_to(paths.REPO))}
        adapt = ["adapt", "--source", src.raw, "--source-labels", src.labels, "--method", method,
                 "--base-channels", str(p["base_channels"]), "--iterations", str(p["iterations"]),
                 "--out", str(trained), "--no-target-bn", *opt_flags(method, options),
                 "--batch-size", str(p["batch_size"]), "--patch-size", str(p["patch_size"]),
                 "--seed", str(seed), "--quiet", restart_or_resume(trained),
                 *augment_flags(config), *precision_flags(config)]  # fmt: skip
        adapt += ["--source-z", src.z] if src.z else []
        adapt += ["--target-planes", config["target_planes"]] if "target_planes" in config else []
        # always given: a method's own default (DANN's 0.5) must not change a recorded row
        adapt += ["--average-weights", str(config.get("average_weights", 0.0))]
        # ft never sees the target: the paper's source-only baseline
        adapt += [] if method == "ft" else ["--target", tr.raw, *target_z]
        times["adapt"] = emda(*adapt, log=log)
    if not finished(recalibrated):
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
    result_path = paths.HERE / "results" / profile / "runs" / f"{key}.json"
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
              restart_or_resume(work / "run"),
              "--iterations", str(p["finetune_iterations"]), *precision_flags(config)]  # fmt: skip
        if not finished(work / "run"):  # shared by the rows that differ in scoring only
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

    result.update(seconds=times, emda_version=__version__, trained_with=trained_with(trained))
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
    result_path = paths.HERE / "results" / profile / "runs" / f"{key}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    work = paths.HERE / "work" / profile / key
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    test = config["direction"]["target_test"]
    result: dict = {"key": key, "config": config, "members": [r["key"] for r in members]}
    times: dict[str, float] = {}
    for field in ("scores_as_trained", "scores"):
        if not all(field in r for r in members):
            continue
        inputs = [prediction_path(r, profile, field) for r in members]
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


def trained_with(run: Path) -> dict:
    """torch version, CPU threads, vector instructions and any oneDNN instruction cap the
    row's model trained with (a rerun repeats the result bit for bit only with all of
    them the same); empty for runs older than the record."""
    from emda.model.checkpoint import load_checkpoint

    training = load_checkpoint(run).training
    keys = ("torch_version", "cpu_threads", "cpu_capability", "onednn_max_cpu_isa")
    return {k: training[k] for k in keys if k in training}


def local_path(path: str) -> Path:
    """A work file recorded on another checkout (a GPU machine), found in this one."""
    at = path.find("benchmarks/work/")
    return paths.REPO / path[at:] if at >= 0 else Path(path)


def prediction_path(result: dict, profile: str, field: str = "scores") -> Path:
    """The prediction a result scored (``field``; by default the target-BN one): in its
    key's work directory, where runs that were made elsewhere and adopted, or re-keyed
    by a harness change, keep it too."""
    recorded = local_path(result[field]["prediction"])
    here = paths.HERE / "work" / profile / result["key"] / recorded.name
    return here if here.exists() else recorded


def restart_or_resume(run: Path) -> str:
    """Training that was interrupted (Ctrl-C saves ``state.pt``) continues where it stopped."""
    return "--resume" if (run / "state.pt").exists() else "--overwrite"


def finished(run: Path) -> bool:
    return (run / "checkpoint.pt").exists() and not (run / "state.pt").exists()


def load_results(profile: str) -> list[dict]:
    return [
        json.loads(f.read_text())
        for f in sorted((paths.HERE / "results" / profile / "runs").glob("*.json"))
    ]
