import json

import pytest
import torch

from emda.methods.registry import load_registry
from emda.methods.testing import check_method
from emda.model.checkpoint import load_checkpoint
from tests.conftest import adapt_on_crops

BUILTINS = ["ft", "mmd", "coral", "dann", "ynet", "meanteacher"]


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_method_passes_the_contract_check(name):
    info = load_registry().get(name)
    assert info.origin.endswith(f"emda_methods.{name}")  # registered through the entry point
    terms = check_method(info.cls)
    assert "seg" in terms


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_method_trains_through_the_cli(name, tmp_path):
    result = adapt_on_crops(tmp_path / "r", method=name)
    assert result.exit_code == 0, result.output
    last = json.loads((tmp_path / "r/log.jsonl").read_text().splitlines()[-1])
    expected = {"ft": "seg", "mmd": "mmd4", "coral": "coral4", "dann": "dann4",
                "ynet": "recon_target", "meanteacher": "pseudo_label"}[name]  # fmt: skip
    assert expected in last
    metrics = {"dann": {"domain_accuracy2", "domain_accuracy3", "domain_accuracy4"},
               "meanteacher": {"teaching_fraction", "teacher_foreground", "pseudo_foreground",
                               "source_foreground"}}.get(name)  # fmt: skip
    assert set(last.get("metrics", {})) == (metrics or set())
    assert all(0 <= v <= 1 for v in last.get("metrics", {}).values())  # fractions


def test_a_step_metric_must_be_a_named_scalar():
    from emda.methods.base import TrainStep

    step = TrainStep(None, None, None, None, None, None, 0.0, 0)
    step.log_metric("accuracy", torch.tensor([0.75], requires_grad=True))
    step.log_metric("share", 0.5)
    assert step.metrics["accuracy"].shape == () and not step.metrics["accuracy"].requires_grad
    assert float(step.metrics["share"]) == 0.5
    with pytest.raises(ValueError, match="identifier"):
        step.log_metric("not a name", 1.0)
    with pytest.raises(ValueError, match="scalar"):
        step.log_metric("accuracy", torch.zeros(3))


def test_training_curve_draws_a_metrics_panel_only_when_there_are_metrics(tmp_path):
    from PIL import Image

    from emda.evaluation.plots import training_curve

    records = [{"iteration": i, "loss": 1 / i, "seg": 1 / i, "lr": 1e-3, "seconds": i,
                "metrics": {"domain_accuracy4": 0.5 + 0.1 / i}} for i in range(1, 60)]  # fmt: skip
    training_curve(records, tmp_path / "with.png")
    training_curve([{k: v for k, v in r.items() if k != "metrics"} for r in records],
                   tmp_path / "without.png")  # fmt: skip
    with_h = Image.open(tmp_path / "with.png").size[1]
    assert with_h == 2 * Image.open(tmp_path / "without.png").size[1]


def test_ynet_export_has_no_reconstruction_decoder(tmp_path):
    assert adapt_on_crops(tmp_path / "r", method="ynet").exit_code == 0
    ckpt = load_checkpoint(tmp_path / "r")
    assert ckpt.heads == {}
    assert not any("reconstruction" in k for k in ckpt.state_dict)
    assert set(ckpt.state_dict) == set(ckpt.build_model().state_dict())


def test_ynet_reconstruction_loss_falls_when_overfitting_a_tiny_batch():
    from emda.methods.base import Batch
    from emda.model import UNet, UNetConfig
    from emda.training.loop import compute_terms

    method_cls = load_registry().get("ynet").cls
    method = method_cls(method_cls.Options(lambda_source=1.0, lambda_target=1.0))
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=8, depth=2))
    heads = torch.nn.ModuleDict(method.build_heads(model))
    opt = torch.optim.Adam([*model.parameters(), *heads.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    src = Batch(torch.rand(2, 1, 32, 32, generator=g), torch.zeros(2, 1, 32, 32))
    tgt = Batch(torch.rand(2, 1, 32, 32, generator=g))
    losses = []
    for it in range(60):
        terms = compute_terms(model, heads, method, src, tgt, it / 60, it)
        losses.append(terms["recon_target"].item())
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_dann_reversal_coefficient_follows_the_schedule_or_is_constant():
    cls = load_registry().get("dann").cls
    assert cls().reversal_coefficient(0.0) == 0.0
    assert cls().reversal_coefficient(1.0) == pytest.approx(1.0, abs=1e-4)
    assert cls(cls.Options(schedule=False)).reversal_coefficient(0.0) == 1.0


def test_alignment_lambdas_must_match_the_network_depth(tmp_path):
    result = adapt_on_crops(tmp_path / "r", "--opt", "lambdas=0,1", method="mmd")
    assert result.exit_code == 1 and "give 5 comma-separated weights" in result.output
    assert not (tmp_path / "r").exists()


def _texture_maps(n: int, smooth: bool, g: torch.Generator) -> torch.Tensor:
    """(n, 8, 16, 16) standardised noise; ``smooth``: spatially correlated, same marginals."""
    x = torch.randn(n, 8, 16, 16, generator=g)
    if smooth:
        x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)


def test_dann_conv_classifier_sees_spatial_shift():
    """Per-domain batch norm leaves every channel with mean 0 and variance 1 in both
    domains; a classifier with spatial context can still tell them apart."""
    from types import SimpleNamespace

    from emda.methods.base import Batch, TrainStep
    from emda.model.unet import SegmentationOutput

    cls = load_registry().get("dann").cls
    options = cls.Options(lambdas=(0.0, 1.0), schedule=False)
    method = cls(options)
    model = SimpleNamespace(encoder=SimpleNamespace(channels=[8, 8]))
    torch.manual_seed(0)
    heads = torch.nn.ModuleDict(method.build_heads(model))
    opt = torch.optim.Adam(heads.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for it in range(150):
        fs, ft = _texture_maps(4, False, g), _texture_maps(4, True, g)
        blank = torch.zeros(4, 1, 16, 16)  # the segmentation term is not under test
        step = TrainStep(None, heads, Batch(blank, blank), SegmentationOutput(blank, [fs, fs]),
                         Batch(blank), SegmentationOutput(None, [ft, ft]), 0.5, it)  # fmt: skip
        terms = method.loss_terms(step)
        opt.zero_grad()
        terms["dann1"].backward()
        opt.step()
    accuracy = float(step.metrics["domain_accuracy1"])
    assert accuracy > 0.9, accuracy


@pytest.mark.parametrize("removed", ["classifier=position", "condition=prediction"])
def test_dann_refuses_its_removed_variants(tmp_path, removed):
    result = adapt_on_crops(tmp_path / "r", "--opt", removed, method="dann")
    assert result.exit_code == 1 and "unknown option for method 'dann'" in result.output
    assert not (tmp_path / "r").exists()
