"""The self-training plugin: a frozen teacher loaded from a finished run, its averaged
flipped views, where the network starts, clear errors, and an exact resume."""

import json

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from emda.errors import EmdaError
from emda.methods import FrozenTeacher
from emda.methods.base import Batch
from emda.methods.registry import load_registry
from emda.methods.testing import check_method
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import load_checkpoint
from emda.training.loop import compute_terms
from tests.conftest import CROPS, adapt_on_crops

from .test_resume import ARGS, kill_resume_matches_whole


@pytest.fixture
def method_cls():
    return load_registry().get("selftrain").cls


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A finished tiny run (base_channels 4, depth 4, target BN) to teach with."""
    run = tmp_path_factory.mktemp("teacher") / "run"
    result = adapt_on_crops(run, method="ft")
    assert result.exit_code == 0, result.output
    return run


def test_selftrain_passes_the_contract_check(method_cls, teacher_run):
    info = load_registry().get("selftrain")
    assert info.origin.endswith("emda_methods.selftrain")  # registered through the entry point
    terms = check_method(method_cls, method_cls.Options(teacher=str(teacher_run)))
    assert set(terms) == {"seg", "pseudo_label"}


def test_teacher_averages_its_views_on_the_input_grid(teacher_run):
    teacher = FrozenTeacher(load_checkpoint(teacher_run), batch_stats=False)
    conv = nn.Conv2d(1, 1, kernel_size=3, padding=1)  # not equivariant: views differ
    teacher.net = conv
    x = torch.rand(2, 1, 12, 12)
    one = [teacher.probabilities(x, [k]) for k in (0, 5)]
    torch.testing.assert_close(teacher.probabilities(x, [0, 5]), (one[0] + one[1]) / 2)
    torch.testing.assert_close(one[0], torch.sigmoid(conv(x)).detach())
    assert not one[0].requires_grad


def test_teacher_uses_its_stored_statistics_unless_told_otherwise(teacher_run):
    ckpt = load_checkpoint(teacher_run)
    x = torch.rand(2, 1, 32, 32)
    stored, batch = FrozenTeacher(ckpt, False), FrozenTeacher(ckpt, True)
    stored.train(), batch.train()  # what the training loop does to every head
    expected = torch.sigmoid(ckpt.build_model().eval()(x)).detach()
    torch.testing.assert_close(stored.probabilities(x, [0]), expected)
    assert not torch.allclose(batch.probabilities(x, [0]), expected)


@pytest.mark.parametrize("init", ["teacher", "scratch"])
def test_the_network_starts_from_the_teacher_or_from_scratch(method_cls, teacher_run, init):
    ckpt = load_checkpoint(teacher_run)
    method = method_cls(method_cls.Options(teacher=str(teacher_run), init=init))
    torch.manual_seed(0)
    model = UNet(ckpt.model_config)
    method.build_heads(model)
    method.initialise(model)
    same = all(torch.equal(v, ckpt.state_dict[k]) for k, v in model.state_dict().items())
    assert same is (init == "teacher")


def test_only_confident_teacher_pixels_teach(method_cls, teacher_run):
    method = method_cls(method_cls.Options(teacher=str(teacher_run), confidence=0.9))
    model = UNet(UNetConfig(base_channels=4, depth=4))
    heads = nn.ModuleDict(method.build_heads(model))
    heads["teacher"].net = nn.Conv2d(1, 1, 1)
    nn.init.zeros_(heads["teacher"].net.weight)
    for bias, taught in ((0.0, 0.0), (5.0, 1.0)):  # p = 0.5 everywhere, then 0.993
        nn.init.constant_(heads["teacher"].net.bias, bias)
        metrics = {}
        src = Batch(torch.rand(2, 1, 32, 32), torch.zeros(2, 1, 32, 32))
        terms = compute_terms(
            model, heads, method, src, Batch(torch.rand(2, 1, 32, 32)), 0.5, 3, metrics=metrics
        )
        assert (terms["pseudo_label"].item() > 0) is bool(taught)
        assert metrics["teaching_fraction"].item() == taught


def test_errors_name_the_option_or_the_teacher(method_cls, teacher_run, tmp_path):
    with pytest.raises(EmdaError, match="teacher=RUN"):
        method_cls().build_heads(UNet(UNetConfig()))
    with pytest.raises(EmdaError, match="no such checkpoint"):
        method_cls(method_cls.Options(teacher=str(tmp_path / "nope"))).build_heads(UNet())
    with pytest.raises(EmdaError, match="init=scratch"):  # teacher has 4 base channels
        method_cls(method_cls.Options(teacher=str(teacher_run))).build_heads(UNet(UNetConfig()))
    heads = method_cls(method_cls.Options(teacher=str(teacher_run), init="scratch")).build_heads(
        UNet(UNetConfig(base_channels=8))
    )
    assert heads["teacher"].net.config.base_channels == 4
    for bad in ({"views": 0}, {"views": 9}, {"confidence": 0.3}, {"init": "random"},
                {"teacher_bn": "source"}, {"lambda_pseudo": -1}):  # fmt: skip
        with pytest.raises(ValueError):
            method_cls.Options(**bad)


def test_selftrain_through_the_cli_exports_no_teacher(teacher_run, tmp_path):
    result = adapt_on_crops(tmp_path / "r", "--opt", f"teacher={teacher_run}", method="selftrain")
    assert result.exit_code == 0, result.output
    last = json.loads((tmp_path / "r/log.jsonl").read_text().splitlines()[-1])
    assert {"seg", "pseudo_label"} <= set(last)
    assert set(last["metrics"]) == {
        "teaching_fraction", "pseudo_foreground", "source_foreground", "agreement"
    }  # fmt: skip
    ckpt = load_checkpoint(tmp_path / "r")
    assert ckpt.heads == {} and set(ckpt.state_dict) == set(ckpt.build_model().state_dict())
    assert ckpt.method_options["teacher"] == str(teacher_run)


def test_a_missing_teacher_is_one_line_and_writes_nothing(tmp_path):
    result = adapt_on_crops(tmp_path / "r", method="selftrain")
    assert result.exit_code != 0
    assert "teacher=RUN" in result.output and not (tmp_path / "r").exists()


def test_sigkill_then_resume_matches_an_uninterrupted_run(teacher_run, tmp_path):
    # resuming must not start again from the teacher: the saved state holds the weights
    args = [a if a != "dann" else "selftrain" for a in ARGS]
    args += ["--opt", f"teacher={teacher_run}", "--opt", "confidence=0.5"]
    kill_resume_matches_whole(tmp_path, args)


def test_a_teacher_with_source_statistics_is_warned_about(method_cls, tmp_path, caplog):
    run = tmp_path / "source_bn"
    assert adapt_on_crops(run, "--no-target-bn").exit_code == 0
    with caplog.at_level("WARNING", logger="emda"):
        method_cls(method_cls.Options(teacher=str(run))).build_heads(
            UNet(UNetConfig(base_channels=4))
        )
    assert "emda recalibrate" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="emda"):  # each batch's statistics: nothing to warn
        method_cls(
            method_cls.Options(teacher=str(run), teacher_bn="batch", pseudo_labels="patch")
        ).build_heads(UNet(UNetConfig(base_channels=4)))
    assert caplog.text == ""


def test_volume_pseudo_labels_are_the_teachers_slice_wise_prediction(method_cls, teacher_run):
    """pseudo_labels=volume: the allowed slices predicted by `emda predict`'s own predictor
    (same tiles, overlap, blending; ``views`` flips as its --tta averages all 8), the
    others left at 0."""
    from emda.inference.sliding_window import SlidingWindowPredictor
    from emda.io.volume import open_volume

    raw = open_volume(CROPS / "epfl_train/raw.tif")
    ckpt = load_checkpoint(teacher_run)
    intensity = ckpt.normalization.fit(raw)
    method = method_cls(method_cls.Options(teacher=str(teacher_run), pseudo_labels="volume",
                                           views=1))  # fmt: skip
    guide = method.target_guide(raw, intensity, [2, 3], torch.device("cpu"))
    assert guide.shape == raw.shape and not guide.read(0).any()
    predictor = SlidingWindowPredictor(ckpt.build_model(), torch.device("cpu"), tile_size=256)
    expected = predictor.predict_slice(intensity.apply(raw.read(3)))
    np.testing.assert_array_equal(guide.read(3), expected)
    two = method_cls(method_cls.Options(teacher=str(teacher_run), pseudo_labels="volume"))
    flipped = SlidingWindowPredictor(ckpt.build_model(), torch.device("cpu"), 256, tta=True,
                                     views=2)  # fmt: skip
    np.testing.assert_array_equal(
        two.target_guide(raw, intensity, [3], torch.device("cpu")).read(3),
        flipped.predict_slice(intensity.apply(raw.read(3))),
    )
    patchwise = method_cls(method_cls.Options(teacher=str(teacher_run), pseudo_labels="patch"))
    assert patchwise.target_guide(raw, intensity, [2, 3], torch.device("cpu")) is None


def test_a_guide_replaces_the_teacher_on_the_patch(method_cls, teacher_run):
    method = method_cls(method_cls.Options(teacher=str(teacher_run), pseudo_labels="volume"))
    model = UNet(UNetConfig(base_channels=4, depth=4))
    heads = nn.ModuleDict(method.build_heads(model))
    heads["teacher"].net = nn.Conv2d(1, 1, 1)  # p = 0.5 everywhere: would teach nothing
    nn.init.zeros_(heads["teacher"].net.weight), nn.init.zeros_(heads["teacher"].net.bias)
    guide = torch.zeros(2, 1, 32, 32)
    guide[:, :, :16] = 0.97  # confident foreground on top, confident background below
    src = Batch(torch.rand(2, 1, 32, 32), torch.zeros(2, 1, 32, 32))
    metrics = {}
    terms = compute_terms(model, heads, method, src, Batch(torch.rand(2, 1, 32, 32), guide=guide),
                          0.5, 3, metrics=metrics)  # fmt: skip
    assert terms["pseudo_label"].item() > 0
    assert metrics["teaching_fraction"].item() == 1.0
    assert metrics["pseudo_foreground"].item() == pytest.approx(0.5)


def test_volume_pseudo_labels_train_in_three_planes_through_the_cli(teacher_run, tmp_path):
    result = adapt_on_crops(tmp_path / "r", "--opt", f"teacher={teacher_run}",
                            "--opt", "pseudo_labels=volume", "--target-planes", "ortho",
                            target=CROPS / "epfl_train/raw.tif", method="selftrain")  # fmt: skip
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(tmp_path / "r")
    assert ckpt.method_options["pseudo_labels"] == "volume"
    assert ckpt.training["target_planes"] == "ortho" and ckpt.heads == {}


@pytest.mark.parametrize(
    "bad",
    [{"pseudo_labels": ""}, {"pseudo_labels": "volume", "teacher_bn": "batch"},
     {"teacher_bn": "batch"},  # the default is volume: batch statistics need patch
     {"pseudo_labels": "patch", "teacher_bn": "batch", "balance": "class"}],
)  # fmt: skip
def test_pseudo_label_options_are_checked(method_cls, bad):
    with pytest.raises(ValueError, match="pseudo_labels"):
        method_cls.Options(**bad)


def test_a_stored_prediction_teaches_without_a_teacher_model(tmp_path):
    """pseudo_labels=PATH: what `emda predict` wrote (uint8, round(255 p)) is read as
    probabilities; with init=scratch no teacher run is needed."""
    from emda.io.volume import open_volume
    from emda.methods import read_prediction

    raw = CROPS / "epfl_train/raw.tif"
    prob = np.zeros(tifffile.imread(raw).shape, np.uint8)
    prob[:, :100] = 255  # confident foreground on top, confident background below
    tifffile.imwrite(tmp_path / "p.tif", prob)
    guide = read_prediction(str(tmp_path / "p.tif"), open_volume(raw), [1, 2], "--opt")
    assert guide.read(1)[0, 0] == 1.0 and guide.read(1)[-1, 0] == 0.0 and not guide.read(0).any()
    result = adapt_on_crops(tmp_path / "r", "--opt", f"pseudo_labels={tmp_path / 'p.tif'}",
                            "--opt", "init=scratch", "--target-planes", "ortho",
                            target=raw, method="selftrain")  # fmt: skip
    assert result.exit_code == 0, result.output
    last = json.loads((tmp_path / "r/log.jsonl").read_text().splitlines()[-1])
    assert last["metrics"]["teaching_fraction"] == 1.0 and last["pseudo_label"] > 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "none.tif", "none.tif: no such file"),
        (lambda d: (tifffile.imwrite(d / "s.tif", np.zeros((2, 8, 8), np.uint8)), d / "s.tif")[1],
         "differs from the target"),
        (lambda d: (tifffile.imwrite(d / "n.tif", np.full((16, 384, 384), 2.0, np.float32)),
                    d / "n.tif")[1], "values outside [0, 1]"),
    ],
)  # fmt: skip
def test_a_bad_stored_prediction_is_one_line_and_writes_nothing(tmp_path, make, message):
    path = make(tmp_path)
    result = adapt_on_crops(tmp_path / "r", "--opt", f"pseudo_labels={path}", "--opt",
                            "init=scratch", target=CROPS / "epfl_train/raw.tif",
                            method="selftrain")  # fmt: skip
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_an_occupied_out_is_refused_before_the_teachers_work(tmp_path):
    """The run directory is checked before pseudo-labels are read or predicted (minutes
    of work): here the refusal comes first, not the missing prediction."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r/checkpoint.pt").write_bytes(b"a run")
    result = adapt_on_crops(tmp_path / "r", "--opt", f"pseudo_labels={tmp_path / 'none.tif'}",
                            "--opt", "init=scratch", target=CROPS / "epfl_train/raw.tif",
                            method="selftrain")  # fmt: skip
    assert result.exit_code == 1 and "already holds a run" in result.output
    assert (tmp_path / "r/checkpoint.pt").read_bytes() == b"a run"


def test_only_rank_0_checks_the_run_directory(tmp_path, monkeypatch):
    """Under torchrun, rank 0 may already have written the run directory when another
    rank reaches the early check: that rank must not refuse it as occupied (a race that
    failed the two-process test on a loaded machine)."""
    from emda.training import ddp

    (tmp_path / "r").mkdir()
    (tmp_path / "r/checkpoint.pt").write_bytes(b"rank 0's run")
    monkeypatch.setattr(ddp, "is_main", lambda: False)
    result = adapt_on_crops(tmp_path / "r", "--opt", f"pseudo_labels={tmp_path / 'none.tif'}",
                            "--opt", "init=scratch", target=CROPS / "epfl_train/raw.tif",
                            method="selftrain")  # fmt: skip
    # past the run-directory check, the next refusal is the missing prediction
    assert result.exit_code == 1 and "none.tif: no such file" in result.output, result.output


def test_an_unknown_balance_is_refused(method_cls):
    with pytest.raises(ValueError, match="balance must be one of none, class"):
        method_cls.Options(balance="classes")


def _taught_shares(p: np.ndarray, confidence) -> tuple[float, float]:
    """Share of each class's pixels (foreground, background) that teach, as the loss
    selects them."""
    from emda.methods.losses import pseudo_label_loss

    t = torch.from_numpy(p)
    _, confident, pseudo = pseudo_label_loss(torch.zeros_like(t), t, confidence)
    fg = pseudo.bool()
    return confident[fg].mean().item(), confident[~fg].mean().item()


@pytest.mark.parametrize("unsure", ["foreground", "background"])
def test_class_balance_lowers_the_less_sure_class_until_both_teach_alike(unsure):
    """At confidence 0.9 the sure class teaches 90 % of its pixels and the unsure one
    under half: the unsure class's threshold drops to take in its next pixels (p 0.7 or 0.3),
    the other's stays 0.9."""
    from emda.io.volume import Volume
    from emda.methods import class_balanced_confidence

    sure = np.r_[np.full(90, 0.01), np.full(10, 0.3)]  # background: 90 % at 0.99
    weak = np.r_[np.full(25, 0.95), np.full(25, 0.7), np.full(5, 0.6)]  # foreground: 25 of 55
    if unsure == "background":
        sure, weak = 1 - sure, 1 - weak
    p = np.r_[sure, weak].astype(np.float32).reshape(1, 1, -1)
    guide = Volume(np.concatenate([np.zeros_like(p), p]), "guide")
    before = _taught_shares(p, 0.9)
    thresholds = class_balanced_confidence(guide, [1], 0.9)  # slice 0 is not read
    after = _taught_shares(p, thresholds)
    lowered = 0 if unsure == "foreground" else 1
    assert thresholds[1 - lowered] == 0.9
    assert 0.6 < thresholds[lowered] <= 0.7
    assert before[lowered] == pytest.approx(25 / 55) and before[1 - lowered] == pytest.approx(0.9)
    assert after[lowered] == pytest.approx(50 / 55) and after[1 - lowered] == before[1 - lowered]


def test_class_balance_keeps_the_threshold_with_one_class_or_equal_shares():
    from emda.io.volume import Volume
    from emda.methods import class_balanced_confidence

    background_only = Volume(np.full((1, 4, 4), 0.2, np.float32), "guide")
    assert class_balanced_confidence(background_only, [0], 0.9) == (0.9, 0.9)
    even = np.array([[[0.95, 0.05, 0.6, 0.4]]], np.float32)  # each class: half at 0.9
    assert class_balanced_confidence(Volume(even, "guide"), [0], 0.9) == (0.9, 0.9)


def test_balance_class_sets_the_thresholds_the_loss_uses(method_cls, tmp_path):
    """With a stored prediction whose mitochondria are less sure than its background,
    ``balance=class`` lowers the foreground threshold once, before training; the step's
    pseudo-label term then teaches those pixels."""
    from emda.io.volume import open_volume

    raw = CROPS / "epfl_train/raw.tif"
    prob = np.full(tifffile.imread(raw).shape, 0.02, np.float32)
    prob[:, :60] = 0.8  # foreground, below 0.9: teaches nothing without balance
    prob[:, 60:100] = 0.95
    tifffile.imwrite(tmp_path / "p.tif", prob)
    options = {"pseudo_labels": str(tmp_path / "p.tif"), "init": "scratch"}
    plain = method_cls(method_cls.Options(**options))
    balanced = method_cls(method_cls.Options(**options, balance="class"))
    target = open_volume(raw)
    for method in (plain, balanced):
        guide = method.target_guide(target, None, [1, 2], torch.device("cpu"))
    assert plain.thresholds is None
    assert balanced.thresholds[1] == 0.9 and 0.75 < balanced.thresholds[0] <= 0.8
    model = UNet(UNetConfig(base_channels=4, depth=4))
    window = torch.from_numpy(guide.read(1)[:128, :32].copy())[None, None]
    shares = []
    for method in (plain, balanced):
        metrics = {}
        compute_terms(model, nn.ModuleDict(method.build_heads(model)), method,
                      Batch(torch.rand(1, 1, 128, 32), torch.zeros(1, 1, 128, 32)),
                      Batch(torch.rand(1, 1, 128, 32), guide=window), 0.5, 3,
                      metrics=metrics)  # fmt: skip
        shares.append(metrics["teaching_fraction"].item())
    assert shares[0] == pytest.approx(68 / 128) and shares[1] == 1.0
    assert metrics["foreground_confidence"].item() == pytest.approx(balanced.thresholds[0])


def test_balance_class_through_the_cli_logs_its_thresholds(tmp_path):
    raw = CROPS / "epfl_train/raw.tif"
    prob = np.full(tifffile.imread(raw).shape, 0.02, np.float32)
    prob[:, :100] = 0.8
    tifffile.imwrite(tmp_path / "p.tif", prob)
    result = adapt_on_crops(tmp_path / "r", "--opt", f"pseudo_labels={tmp_path / 'p.tif'}",
                            "--opt", "init=scratch", "--opt", "balance=class",
                            target=raw, method="selftrain")  # fmt: skip
    assert result.exit_code == 0, result.output
    last = json.loads((tmp_path / "r/log.jsonl").read_text().splitlines()[-1])["metrics"]
    assert last["teaching_fraction"] == 1.0 and last["background_confidence"] == pytest.approx(0.9)
    assert 0.75 < last["foreground_confidence"] < 0.8001  # float32 in the log
    patchwise = adapt_on_crops(tmp_path / "q", "--opt", "pseudo_labels=patch", "--opt",
                               "balance=class", target=raw, method="selftrain")  # fmt: skip
    assert patchwise.exit_code == 1 and "balance=class needs pseudo_labels" in patchwise.output
    assert len(patchwise.output.strip().splitlines()) == 1
    assert not (tmp_path / "q").exists()
