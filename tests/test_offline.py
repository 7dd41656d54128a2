"""emda touches the network only in `emda data fetch`: train, predict and evaluate with
every socket connection refused."""

import socket

import pytest
from typer.testing import CliRunner

from emda.cli import app

from .conftest import CROPS, adapt_on_crops


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network access in a test that must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_the_whole_workflow_runs_without_the_network(no_network, tmp_path):
    assert adapt_on_crops(tmp_path / "run", method="ynet").exit_code == 0
    runner = CliRunner()
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run"), str(CROPS / "vnc/raw.tif"),
                                    "--output", str(tmp_path / "p.tif"), "--device", "cpu",
                                    "--quiet"])  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    scored = runner.invoke(app, ["evaluate", str(tmp_path / "p.tif"), "--labels",
                                 str(CROPS / "vnc/labels.tif")])  # fmt: skip
    assert scored.exit_code == 0 and runner.invoke(app, ["methods"]).exit_code == 0
    assert no_network == []
