"""The paper-table harness keys every row by its configuration, method options included."""

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from emda.methods.options import parse_options
from emda.methods.registry import load_registry

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MODULES = ("paths", "config", "running", "adopt", "labels", "report")


@pytest.fixture(scope="module")
def harness():
    """The harness's names, whichever of its modules holds them (``main``: paper_table.py's),
    and each module by its name, to patch."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        modules = {name: importlib.import_module(f"harness.{name}") for name in MODULES}
        spec = importlib.util.spec_from_file_location("paper_table", BENCHMARKS / "paper_table.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
    finally:
        sys.path.remove(str(BENCHMARKS))
    names = {k: v for m in modules.values() for k, v in vars(m).items() if not k.startswith("__")}
    yield types.SimpleNamespace(**{**names, **modules, "main": script.main})
    for name in [m for m in sys.modules if m == "harness" or m.startswith("harness.")]:
        del sys.modules[name]


@pytest.fixture
def fake_runs(harness, tmp_path, monkeypatch):
    """The harness in ``tmp_path``, its emda calls recorded instead of run: a training
    call leaves a finished run, an evaluation an IoU of 0.5."""
    monkeypatch.setattr(harness.paths, "REPO", tmp_path)
    monkeypatch.setattr(harness.paths, "HERE", tmp_path / "benchmarks")
    calls = []

    def fake_emda(*args, log):
        calls.append(args)
        if args[0] in ("adapt", "recalibrate"):
            out = Path(args[args.index("--out") + 1])
            out.mkdir(parents=True)
            (out / "checkpoint.pt").touch()
        if args[0] in ("predict", "ensemble"):
            Path(args[args.index("--output") + 1]).touch()
        if args[0] == "evaluate":
            scores = [{"iou": 0.5, "prediction": args[1]}]
            Path(args[args.index("--json") + 1]).write_text(json.dumps(scores))
        return 1.0

    monkeypatch.setattr(harness.running, "emda", fake_emda)
    monkeypatch.setattr(harness.running, "trained_with", lambda run: {"cpu_threads": 2})
    return calls


@pytest.mark.parametrize("method", ["ft", "mmd", "coral", "dann", "ynet", "meanteacher"])
def test_default_options_key_a_row_by_what_changed_since_options_entered_the_key(harness, method):
    """Rows made before options entered the key keep their keys (and their results);
    a default changed since (DANN's classifier) gives new rows new keys, so the harness
    never scores an old run as the new default's."""
    changed_since = {"dann": {"classifier": "conv"}}.get(method, {})
    assert harness.option_changes(method, harness.method_options(method, [])) == changed_since


def test_a_changed_option_is_recorded_and_set_explicitly(harness):
    options = harness.method_options("dann", ["gamma=5"])
    assert harness.option_changes("dann", options) == {"classifier": "conv", "gamma": 5.0}
    # the flags reproduce the options whatever the method's defaults are; an option emda
    # no longer has stays in the key but is never passed to emda
    flags = harness.opt_flags("dann", options)
    assignments = flags[1::2]  # "--opt", "name=value", ...
    assert set(flags[::2]) == {"--opt"}
    assert not any(a.startswith(("classifier=", "condition=")) for a in assignments)
    dann = load_registry().get("dann").cls
    assert parse_options(dann.Options, assignments, "dann") == dann.Options(gamma=5.0)


def test_changed_options_give_the_row_its_own_key_and_label(harness):
    base = {"method": "dann", "seed": 0}
    assert harness.config_key(base) != harness.config_key({**base, "opt": {"gamma": 5.0}})
    # a row is labelled by how it differs from what `emda adapt --method dann` trains today
    default = harness.method_options("dann", [])["classifier"]
    rows = {
        "position": {"method": "dann"},
        "conv": {"method": "dann", "opt": {"classifier": "conv"}},
    }
    for classifier, config in rows.items():
        expected = {} if classifier == default else {"classifier": classifier}
        assert harness.non_default_options(config) == expected
        assert harness.has_default_settings(config) == (classifier == default)


def test_a_bad_option_stops_the_harness_naming_it(harness):
    with pytest.raises(SystemExit, match="unknown option for method 'dann'"):
        harness.method_options("dann", ["classifier=pixel"])
    with pytest.raises(SystemExit, match="unknown option for method 'ft'"):
        harness.method_options("ft", ["lambdas=1"])


def test_interrupted_training_is_resumed_not_restarted(harness, tmp_path):
    assert harness.restart_or_resume(tmp_path) == "--overwrite"
    (tmp_path / "state.pt").touch()  # what Ctrl-C leaves in an emda run directory
    assert harness.restart_or_resume(tmp_path) == "--resume"


def selftrain_row(harness, seed: int, teacher: str) -> tuple:
    """An EPFL -> VNC selftrain row of the CPU profile: direction, options, config."""
    direction = harness.directions("shared")["epfl2vnc"]
    options = harness.row_options("selftrain", [f"teacher={teacher}"])
    return direction, options, harness.row_config("cpu", direction, "selftrain", seed, None,
                                                  "xy", options)  # fmt: skip


def test_selftrain_trains_its_teacher_row_first_and_is_keyed_by_its_name(
    harness, tmp_path, fake_runs
):
    calls = fake_runs
    direction, options, config = selftrain_row(harness, 1, "ynet")
    assert config["opt"]["teacher"] == "ynet"  # the key names the teacher's method, no path
    times = {}
    trained, recalibrated = harness.adapted_models(config, direction, options, times)
    ynet = harness.row_config("cpu", direction, "ynet", 1, None, "xy",
                              harness.method_options("ynet", []))  # fmt: skip
    teacher_dir = harness.adapted_dir(ynet)  # the Y-Net row's own work directory
    assert [c[0] for c in calls] == ["adapt", "recalibrate", "adapt", "recalibrate"]
    assert calls[0][calls[0].index("--method") + 1] == "ynet"
    flags = calls[2]
    assert flags[flags.index("--method") + 1] == "selftrain"
    teacher = f"teacher={(teacher_dir / 'run_target_bn').relative_to(tmp_path)}"
    assert teacher in flags and flags[flags.index("--seed") + 1] == "1"
    assert set(times) == {"teacher_adapt", "teacher_recalibrate", "adapt", "recalibrate"}
    assert recalibrated == trained.parent / "run_target_bn" and trained.parent != teacher_dir
    calls.clear()  # finished models are reused, the teacher's too
    harness.adapted_models(config, direction, options, {})
    assert calls == []


def test_teacher_selftrain_is_a_second_round_taught_by_the_default_selftrain_row(
    harness, tmp_path, fake_runs
):
    calls = fake_runs
    direction, options, config = selftrain_row(harness, 2, "selftrain")
    assert config["opt"]["teacher"] == "selftrain"
    times = {}
    harness.adapted_models(config, direction, options, times)
    adapts = [c for c in calls if c[0] == "adapt"]
    methods = [a[a.index("--method") + 1] for a in adapts]
    assert methods == ["ynet", "selftrain", "selftrain"]  # Y-Net, round 1, round 2
    first_round = harness.row_config("cpu", direction, "selftrain", 2, None, "xy",
                                     harness.row_options("selftrain", []))  # fmt: skip
    assert first_round["opt"]["teacher"] == "ynet"  # the default row, with its own key
    round_one = harness.adapted_dir(first_round) / "run_target_bn"
    assert f"teacher={round_one.relative_to(tmp_path)}" in adapts[2]
    assert {"teacher_teacher_adapt", "teacher_adapt", "adapt"} <= set(times)
    # the first round is the same row `--methods selftrain` trains: reused, not retrained
    calls.clear()
    harness.adapted_models(first_round, direction, harness.row_options("selftrain", []), {})
    assert calls == []


@pytest.mark.parametrize(
    ("row_kind", "teacher_kind"),
    [("patch", "patch"), ("volume", "volume"), ("benchmarks/stored.tif", None)],
)
def test_a_second_round_teacher_takes_the_rows_kind_of_pseudo_labels_but_never_a_path(
    harness, tmp_path, fake_runs, row_kind, teacher_kind
):
    calls = fake_runs
    direction = harness.directions("shared")["epfl2vnc"]
    options = harness.row_options("selftrain", ["teacher=selftrain", f"pseudo_labels={row_kind}"])
    config = harness.row_config("cpu", direction, "selftrain", 0, None, "xy", options)
    harness.adapted_models(config, direction, options, {})
    adapts = [c for c in calls if c[0] == "adapt"]
    assert len(adapts) == 3  # Y-Net, round one, round two
    # round one is the row `--methods selftrain` trains with that kind (or the default)
    first = harness.row_options(
        "selftrain", [f"pseudo_labels={teacher_kind}"] if teacher_kind else []
    )
    round_one = harness.adapted_dir(
        harness.row_config("cpu", direction, "selftrain", 0, None, "xy", first)
    )
    assert f"teacher={(round_one / 'run_target_bn').relative_to(tmp_path)}" in adapts[2]
    expected = teacher_kind or harness.method_options("selftrain", [])["pseudo_labels"]
    assert f"pseudo_labels={expected}" in adapts[1]  # no stored-prediction path in round one
    assert f"pseudo_labels={row_kind}" in adapts[2]


def test_a_tta_row_scores_the_same_models_with_emda_predict_tta(harness, fake_runs):
    calls = fake_runs
    direction = harness.directions("shared")["epfl2vnc"]
    plain = harness.run_one("cpu", direction, "ynet", 0, None)
    tta = harness.run_one("cpu", direction, "ynet", 0, None, tta=True)
    assert plain["key"] != tta["key"] and tta["config"]["tta"] is True
    assert plain["trained_with"] == {"cpu_threads": 2}
    assert "tta" not in plain["config"]  # plain rows keep the keys they always had
    adapts = [c for c in calls if c[0] == "adapt"]
    assert len(adapts) == 1  # the tta row reuses the trained models
    predicts = [c for c in calls if c[0] == "predict"]
    assert ["--tta" in c for c in predicts] == [False, False, True, True]
    outputs = {c[c.index("--output") + 1] for c in predicts}
    assert len(outputs) == 4  # the tta predictions do not overwrite the plain ones
    assert harness.setting_order("unsupervised, tta") > harness.setting_order("unsupervised")


def test_an_augmentation_row_trains_its_own_models_teacher_included(harness, fake_runs):
    calls = fake_runs
    direction = harness.directions("shared")["vnc2epfl"]
    plain = harness.run_one("cpu", direction, "selftrain", 0, None)
    blurred = harness.run_one("cpu", direction, "selftrain", 0, None, augment=["noise=0.1"])
    assert "augment" not in plain["config"]  # default rows keep the keys they always had
    assert blurred["config"]["augment"] == {"noise": 0.1}
    assert blurred["key"] != plain["key"]
    adapts = [c for c in calls if c[0] == "adapt"]
    # Y-Net teacher and selftrain student, once plain and once with the augmentation
    assert [a[a.index("--method") + 1] for a in adapts] == ["ynet", "selftrain"] * 2
    assert ["--noise" in a for a in adapts] == [False, False, True, True]
    assert all(a[a.index("--noise") + 1] == "0.1" for a in adapts[2:])
    # a value equal to emda adapt's default changes nothing; the label names the change
    assert harness.augment_changes(["intensity-jitter=0.1", "noise=0"]) == {}
    assert not harness.has_default_settings(blurred["config"])
    assert harness.row_label(blurred["config"]) == "selftrain (teacher=ynet) (noise=0.1)"


def test_amplitude_mixing_trains_the_adapted_model_but_not_its_finetuning(harness, fake_runs):
    calls = fake_runs
    direction = harness.directions("shared")["epfl2vnc"]
    row = harness.run_one("cpu", direction, "ynet", 0, 0.15, augment=["amplitude_mix=0.5"])
    assert row["config"]["augment"] == {"amplitude_mix": 0.5}
    (adapt,) = [c for c in calls if c[0] == "adapt"]
    assert adapt[adapt.index("--amplitude-mix") + 1] == "0.5"
    (finetune,) = [c for c in calls if c[0] == "finetune"]
    assert "--amplitude-mix" not in finetune  # finetuning has no unlabelled target to mix in


def test_precision_rows_train_their_own_models_and_float32_rows_keep_their_keys(harness, fake_runs):
    calls = fake_runs
    direction = harness.directions("shared")["epfl2vnc"]
    plain = harness.run_one("cpu", direction, "ft", 0, None)
    scored = harness.run_one("cpu", direction, "ft", 0, None, predict_precision="bfloat16")
    trained = harness.run_one("cpu", direction, "ft", 0, None, precision="bfloat16")
    assert "precision" not in plain["config"] and "predict_precision" not in plain["config"]
    assert len({plain["key"], scored["key"], trained["key"]}) == 3
    adapts = [c for c in calls if c[0] == "adapt"]
    # the bfloat16 prediction reuses the float32 model; bfloat16 training has its own
    assert [a[a.index("--precision") + 1] for a in adapts] == ["float32", "bfloat16"]
    predicts = [c for c in calls if c[0] == "predict"]
    assert [c[c.index("--precision") + 1] for c in predicts] == (
        ["float32"] * 2 + ["bfloat16"] * 2 + ["bfloat16"] * 2
    )
    assert harness.row_setting(scored["config"]) == "unsupervised, predicted in bfloat16"
    assert harness.row_label(trained["config"]) == "ft (precision=bfloat16)"
    outputs = [c[c.index("--output") + 1] for c in predicts]
    assert len(set(outputs)) == 6  # the bfloat16 prediction does not replace the plain one


def test_gpu_rows_keep_the_float16_they_were_recorded_with(harness, fake_runs):
    calls = fake_runs
    direction = harness.directions("shared")["epfl2vnc"]
    row = harness.run_one("gpu", direction, "ft", 0, None)
    assert "precision" not in row["config"]  # as keyed before --precision existed
    assert all(c[c.index("--precision") + 1] == "float16" for c in calls if "--precision" in c)
    wider = harness.run_one("gpu", direction, "ft", 0, None, precision="float32")
    assert wider["config"]["precision"] == "float32" and wider["key"] != row["key"]


def test_a_bad_augmentation_stops_the_harness_naming_it(harness):
    with pytest.raises(SystemExit, match="--augment 'sharpness=1': expected NAME=VALUE"):
        harness.augment_changes(["sharpness=1"])
    with pytest.raises(SystemExit, match="'strong' is not a number"):
        harness.augment_changes(["noise=strong"])


def test_a_result_records_the_torch_and_cpu_threads_its_model_trained_with(harness, tmp_path):
    import torch

    from tests.conftest import adapt_on_crops

    result = adapt_on_crops(tmp_path / "run", "--iterations", "2", "--no-target-bn")
    assert result.exit_code == 0, result.output
    assert harness.trained_with(tmp_path / "run") == {
        "torch_version": str(torch.__version__),
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def test_an_ensemble_row_averages_its_seeds_predictions_and_is_keyed_apart(harness, fake_runs):
    calls = fake_runs
    direction = harness.directions("shared")["vnc2epfl"]
    mixed = ["amplitude_mix=0.5"]
    members = [harness.run_one("cpu", direction, "ynet", s, None, augment=mixed) for s in range(3)]
    row = harness.ensemble_row(members)
    assert row["config"]["seed"] is None and row["config"]["ensemble_seeds"] == [0, 1, 2]
    assert row["members"] == [m["key"] for m in members]
    assert row["key"] not in row["members"]
    averaged = [c for c in calls if c[0] == "ensemble"]
    # as trained and with target BN, each the mean of the three seeds' own predictions
    for call, field in zip(averaged, ("scores_as_trained", "scores"), strict=True):
        inputs = list(call[1 : call.index("--output")])
        assert inputs == [m[field]["prediction"] for m in members]
    assert set(row) >= {"scores_as_trained", "scores"}
    assert harness.row_setting(row["config"]) == "unsupervised, 3-seed ensemble"
    assert harness.row_label(row["config"]) == "ynet (amplitude_mix=0.5)"
    calls.clear()
    assert harness.ensemble_row(members) == row and calls == []  # kept, not recomputed
    plain = harness.run_one("cpu", direction, "ynet", 0, None)
    with pytest.raises(SystemExit, match="differ in their seed only"):
        harness.ensemble_row([plain, members[1]])
    Path(members[2]["scores"]["prediction"]).unlink()
    other = [harness.run_one("cpu", direction, "ft", s, None) for s in range(3)]
    Path(other[1]["scores"]["prediction"]).unlink()
    with pytest.raises(SystemExit, match="not on disk"):
        harness.ensemble_row(other)


def test_an_option_added_later_keeps_old_rows_keys_until_it_is_changed(harness):
    """selftrain's rows were keyed with all their options; ``pseudo_labels`` came later,
    so at the value those rows trained with it stays out of the key."""
    old = harness.row_options("selftrain", ["pseudo_labels=patch"])
    assert "pseudo_labels" not in harness.option_changes("selftrain", old)
    new = harness.row_options("selftrain", [])  # volume, the default since stop 26
    assert harness.option_changes("selftrain", new)["pseudo_labels"] == "volume"
    # labels read today's defaults: the old rows are the variant now
    config = harness.row_config("cpu", harness.directions("shared")["epfl2vnc"], "selftrain",
                                0, None, "xy", old)  # fmt: skip
    assert "(pseudo_labels=patch)" in harness.row_label(config)
    # balance came at stop 27: at "none" no key changes, today's default rows' included
    assert "balance" not in harness.option_changes("selftrain", new)
    balanced = harness.row_options("selftrain", ["balance=class"])
    assert harness.option_changes("selftrain", balanced)["balance"] == "class"


def test_target_planes_rows_are_keyed_apart_and_only_the_student_trains_in_three_planes(
    harness, tmp_path, fake_runs
):
    calls = fake_runs
    direction = harness.directions("shared")["vnc2epfl"]
    options = harness.row_options("selftrain", ["pseudo_labels=volume"])
    plain = harness.row_config("cpu", direction, "selftrain", 0, None, "xy", options)
    config = harness.row_config("cpu", direction, "selftrain", 0, None, "xy", options,
                                target_planes="ortho")  # fmt: skip
    assert harness.config_key(plain) != harness.config_key(config) and "target_planes" not in plain
    label = harness.row_label(config)
    assert "pseudo_labels" not in label and label.endswith("(target_planes=ortho)")  # default
    assert not harness.has_default_settings(config)
    harness.adapted_models(config, direction, options, {})
    teacher, student = (c for c in calls if c[0] == "adapt")
    assert "--target-planes" not in teacher  # the teacher row is the usual Y-Net
    assert student[student.index("--target-planes") + 1] == "ortho"


def test_weight_averaging_rows_are_keyed_apart_and_only_the_row_itself_averages(harness, fake_runs):
    calls = fake_runs
    direction = harness.directions("shared")["epfl2vnc"]
    plain = harness.run_one("cpu", direction, "selftrain", 0, None)
    averaged = harness.run_one("cpu", direction, "selftrain", 0, None, average_weights=0.5)
    assert "average_weights" not in plain["config"]  # rows without it keep their keys
    assert averaged["config"]["average_weights"] == 0.5 and averaged["key"] != plain["key"]
    assert harness.row_label(averaged["config"]).endswith("(average_weights=0.5)")
    assert not harness.has_default_settings(averaged["config"])
    adapts = [c for c in calls if c[0] == "adapt"]
    # the plain pair trains first; the averaged row reuses the plain Y-Net teacher
    assert [a[a.index("--method") + 1] for a in adapts] == ["ynet", "selftrain", "selftrain"]
    # every row says it, so a method's own default (DANN's 0.5) cannot change a plain row
    assert [a[a.index("--average-weights") + 1] for a in adapts] == ["0.0", "0.0", "0.5"]


def test_a_bad_averaging_fraction_stops_the_harness_before_any_work(
    harness, fake_runs, monkeypatch
):
    argv = ["paper_table.py", "run", "--profile", "cpu", "--directions", "epfl2vnc",
            "--methods", "dann", "--seeds", "0", "--average-weights", "2"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match=r"--average-weights 2.0: must be in \[0, 1\]"):
        harness.main()
    assert fake_runs == []  # no emda call, so no work directory either


def test_the_recipe_row_runs_emda_adapt_without_a_method_and_is_keyed_by_its_stages(
    harness, fake_runs, tmp_path
):
    direction = harness.directions("crops")["epfl2vnc"]
    fake_recipe = {"stages": [{"name": "1-align", "status": "kept"}]}

    def adapt_then_record(*args, log):
        harness_emda(*args, log=log)
        if args[0] == "adapt":
            out = Path(args[args.index("--out") + 1])
            (out / "recipe.json").write_text(json.dumps(fake_recipe))
        return 1.0

    harness_emda = harness.running.emda
    harness.running.emda = adapt_then_record
    try:
        result = harness.run_one("smoke", direction, "recipe", 0, None, planes="auto")
    finally:
        harness.running.emda = harness_emda
    (adapt,) = [c for c in fake_runs if c[0] == "adapt"]
    assert "--method" not in adapt and "--no-target-bn" not in adapt and "--target" in adapt
    assert not [c for c in fake_runs if c[0] == "recalibrate"]  # its stages end with target BN
    assert set(result) >= {"scores", "recipe"} and "scores_as_trained" not in result
    assert result["config"]["recipe"]["name"] == "default"
    assert harness.row_label(result["config"]).startswith("recipe (ynet ")
    # another precision is another row, not more seeds of this one
    in_bf16 = harness.row_label({**result["config"], "precision": "bfloat16"})
    assert in_bf16.startswith("recipe (ynet ") and in_bf16.endswith(" (precision=bfloat16)")
