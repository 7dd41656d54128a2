import json

import pytest
import torch

from emda.checkpoint import load_checkpoint
from emda.registry import load_registry
from emda.testing import check_method
from tests.conftest import adapt_on_crops

BUILTINS = ["ft", "mmd", "coral", "dann", "ynet", "meanteacher", "outadv"]


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
                "ynet": "recon_target", "meanteacher": "pseudo_label",
                "outadv": "adversarial"}[name]  # fmt: skip
    assert expected in last
    metrics = {"dann": {"domain_accuracy2", "domain_accuracy3", "domain_accuracy4"},
               "meanteacher": {"teaching_fraction", "teacher_foreground", "pseudo_foreground",
                               "source_foreground"},
               "outadv": {"domain_accuracy"}}.get(name)  # fmt: skip
    assert set(last.get("metrics", {})) == (metrics or set())
    assert all(0 <= v <= 1 for v in last.get("metrics", {}).values())  # fractions


def test_a_step_metric_must_be_a_named_scalar():
    from emda.method import TrainStep

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

    from emda.plots import training_curve

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
    from emda.method import Batch
    from emda.model import UNet, UNetConfig
    from emda.train import compute_terms

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


@pytest.mark.parametrize("classifier, separable", [("position", False), ("conv", True)])
def test_dann_conv_classifier_sees_spatial_shift_a_position_classifier_cannot(
    classifier, separable
):
    """Per-domain batch norm leaves every channel with mean 0 and variance 1 in both
    domains; only a classifier with spatial context can still tell them apart."""
    from types import SimpleNamespace

    from emda.method import Batch, TrainStep
    from emda.model.unet import SegmentationOutput

    cls = load_registry().get("dann").cls
    options = cls.Options(lambdas=(0.0, 1.0), classifier=classifier, schedule=False)
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
    assert (accuracy > 0.9) if separable else (accuracy < 0.7), accuracy


def test_outadv_sends_the_discriminator_s_gradient_reversed_into_the_network():
    from emda.method import Batch
    from emda.model import UNet, UNetConfig
    from emda.train import compute_terms

    cls = load_registry().get("outadv").cls
    method = cls(cls.Options(weight=1.0, schedule=False))
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=2))
    heads = torch.nn.ModuleDict(method.build_heads(model))
    g = torch.Generator().manual_seed(1)
    source = Batch(torch.rand(2, 1, 32, 32, generator=g),
                   (torch.rand(2, 1, 32, 32, generator=g) > 0.5).float())  # fmt: skip
    target = Batch(torch.rand(2, 1, 32, 32, generator=g))

    def grads(reversed_: bool):
        model.zero_grad()
        heads.zero_grad()
        if reversed_:
            loss = compute_terms(model, heads, method, source, target, 0.5, 0)["adversarial"]
        else:  # the discriminator's own loss, no reversal: what it descends
            maps = torch.cat([model(source.x), model(target.x)]).sigmoid()
            logits = heads["discriminator"](maps)
            domain = torch.cat([torch.zeros(2), torch.ones(2)]).view(-1, 1, 1, 1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, domain.expand_as(logits)
            )
        loss.backward()
        return ([p.grad.clone() for p in model.parameters() if p.grad is not None],
                [p.grad.clone() for p in heads.parameters()])  # fmt: skip

    net_rev, d_rev = grads(True)
    net_own, d_own = grads(False)
    assert net_rev and len(net_rev) == len(net_own)
    for a, b in zip(d_rev, d_own):  # the discriminator learns to tell the domains apart
        torch.testing.assert_close(a, b)
    for a, b in zip(net_rev, net_own):  # the network learns to fool it
        torch.testing.assert_close(a, -b)


def test_dann_condition_splits_features_by_the_detached_prediction():
    from emda_methods.dann import conditioned

    features = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    out = conditioned(features, logits)
    assert out.shape == (2, 6, 4, 4)
    p = torch.nn.functional.avg_pool2d(torch.sigmoid(logits), 4)  # pooled to the level's size
    assert torch.allclose(out[:, :3], features * p)
    assert torch.allclose(out[:, 3:] + out[:, :3], features)
    out.sum().backward()
    assert features.grad is not None and logits.grad is None  # only the features are pushed

    from types import SimpleNamespace

    cls = load_registry().get("dann").cls
    model = SimpleNamespace(encoder=SimpleNamespace(channels=[8, 8]))
    for condition, width in (("none", 8), ("prediction", 16)):
        method = cls(cls.Options(lambdas=(0.0, 1.0), condition=condition))
        assert method.needs_target_logits == (condition == "prediction")
        assert method.build_heads(model)["domain1"][0].in_channels == width


def test_dann_conditioned_on_the_prediction_trains_through_the_cli(tmp_path):
    result = adapt_on_crops(tmp_path / "r", "--opt", "condition=prediction", method="dann")
    assert result.exit_code == 0, result.output
    last = json.loads((tmp_path / "r/log.jsonl").read_text().splitlines()[-1])
    assert {"dann2", "dann3", "dann4"} <= set(last)


def test_dann_rejects_an_unknown_condition(tmp_path):
    result = adapt_on_crops(tmp_path / "r", "--opt", "condition=labels", method="dann")
    assert result.exit_code == 1 and "condition must be one of none, prediction" in result.output
    assert not (tmp_path / "r").exists()
