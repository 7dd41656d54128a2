import pytest
from typer.testing import CliRunner

from emda import EmdaError
from emda.cli import app
from emda.methods.registry import load_registry
from tests.conftest import adapt_on_crops

runner = CliRunner()

GOOD_PLUGIN = """
    from dataclasses import dataclass, field

    import torch

    from emda import Method, hookimpl


    @dataclass
    class Options:
        weight: float = field(default=0.5, metadata={"help": "weight of the extra term"})


    class MeanFeature(Method):
        name = "meanfeat"
        description = "Test method: matches the mean bottleneck activation across domains."
        Options = Options

        def build_heads(self, model):
            return {"probe": torch.nn.Linear(model.encoder.channels[-1], 1)}

        def loss_terms(self, step):
            terms = super().loss_terms(step)
            s, t = step.source_out.features[-1], step.target_out.features[-1]
            terms["align"] = self.options.weight * (s.mean() - t.mean()) ** 2
            return terms


    @hookimpl
    def emda_register_methods(register):
        register.add(MeanFeature)
"""


def test_builtin_ft_comes_from_the_plugin_package():
    info = load_registry().get("ft")
    assert info.plugin == "ft" and "emda_methods.ft" in info.origin


def test_a_plugin_installed_at_run_time_is_listed_and_trains(install_plugin, tmp_path):
    install_plugin("emda_test_good", GOOD_PLUGIN)
    listed = runner.invoke(app, ["methods"])
    assert (
        listed.exit_code == 0
        and "meanfeat" in listed.output
        and "emda_test_good" in (listed.output)
    )
    result = adapt_on_crops(tmp_path / "run", "--opt", "weight=2", method="meanfeat")
    assert result.exit_code == 0, result.output
    log = (tmp_path / "run/log.jsonl").read_text()
    assert '"align"' in log and '"seg"' in log
    assert "weight = 2.0" in (tmp_path / "run/config.toml").read_text()


def test_a_plugin_that_fails_to_import_is_reported_and_others_still_work(install_plugin):
    install_plugin("emda_test_broken", "raise ImportError('needs libfoo')\n")
    registry = load_registry()
    assert "ft" in registry.methods
    (failure,) = [f for f in registry.failures if f.plugin == "emda_test_broken"]
    assert "needs libfoo" in failure.error
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0 and "emda_test_broken" in result.output


def test_a_misspelled_hook_is_caught_by_name(install_plugin):
    install_plugin(
        "emda_test_typo",
        GOOD_PLUGIN.replace("def emda_register_methods", "def emda_register_method"),
    )
    registry = load_registry()
    assert "meanfeat" not in registry.methods
    (failure,) = [f for f in registry.failures if f.plugin == "emda_test_typo"]
    assert "emda_register_method'" in failure.error


def test_a_plugin_raising_during_registration_is_reported(install_plugin):
    install_plugin(
        "emda_test_raises",
        """
        from emda import hookimpl

        @hookimpl
        def emda_register_methods(register):
            raise RuntimeError("boom")
    """,
    )
    registry = load_registry()
    assert any("boom" in f.error for f in registry.failures) and "ft" in registry.methods


def test_duplicate_method_names_are_an_error_naming_both_plugins(install_plugin):
    install_plugin(
        "emda_test_dup",
        """
        from emda import Method, hookimpl

        class Other(Method):
            name = "ft"

        @hookimpl
        def emda_register_methods(register):
            register.add(Other)
    """,
    )
    with pytest.raises(
        EmdaError,
        match=r"'ft' is registered by two plugins: 'emda_test_dup'.*'ft'"
        r"|'ft' is registered by two plugins: 'ft'.*emda_test_dup",
    ):
        load_registry()


def test_plugins_can_be_disabled(install_plugin, monkeypatch):
    install_plugin("emda_test_good", GOOD_PLUGIN)
    monkeypatch.setenv("EMDA_DISABLE_PLUGINS", "emda_test_good")
    registry = load_registry()
    assert "meanfeat" not in registry.methods and registry.disabled == ["emda_test_good"]
    with pytest.raises(EmdaError, match="unknown method"):
        registry.get("meanfeat")


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(EmdaError, match=r"--method nope: unknown method \(available: .*ft"):
        load_registry().get("nope")
