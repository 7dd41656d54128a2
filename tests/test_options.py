from dataclasses import dataclass, field

import pytest

from emda import EmdaError
from emda.methods.options import describe_options, options_to_dict, parse_options


@dataclass
class Opts:
    weight: float = 0.1
    levels: tuple[float, ...] = (0.0, 1.0)
    samples: int = 256
    schedule: bool = True
    kernel: str = field(default="gaussian", metadata={"help": "kernel family"})


def test_values_are_converted_to_the_declared_types():
    o = parse_options(
        Opts,
        ["weight=1e-2", "levels=0,0.5,2", "samples=64", "schedule=false", "kernel=laplace"],
        "m",
    )
    assert o == Opts(0.01, (0.0, 0.5, 2.0), 64, False, "laplace")
    assert options_to_dict(o)["levels"] == [0.0, 0.5, 2.0]


def test_toml_dict_values_pass_through():
    assert parse_options(Opts, {"samples": 8}, "m").samples == 8


def test_unknown_option_names_the_method_and_known_options():
    with pytest.raises(EmdaError, match=r"--opt wieght: unknown option for method 'm'.*weight"):
        parse_options(Opts, ["wieght=1"], "m")


@pytest.mark.parametrize("bad", ["samples=many", "schedule=maybe", "weight", "=3"])
def test_ill_typed_or_malformed_values_are_errors(bad):
    with pytest.raises(EmdaError, match="--opt"):
        parse_options(Opts, [bad], "m")


def test_describe_lists_defaults_and_help():
    rows = {r[0]: r for r in describe_options(Opts)}
    assert rows["kernel"][2:] == ("'gaussian'", "kernel family")
