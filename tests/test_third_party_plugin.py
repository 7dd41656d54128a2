"""The third-party path end to end: pip-install the example plugin package, then use it."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from emda.cli import app
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "emda-entropy"
runner = CliRunner()


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    return site


def test_pip_installed_plugin_is_listed_and_trains(
    installed_example, monkeypatch, crops, tmp_path, tiny_train
):
    monkeypatch.syspath_prepend(str(installed_example))
    listed = runner.invoke(app, ["methods"])
    assert "entropy" in listed.output and "emda-entropy" in listed.output
    result = runner.invoke(
        app,
        [
            "adapt",
            "--source",
            str(crops / "epfl_train/raw.tif"),
            "--source-labels",
            str(crops / "epfl_train/labels.tif"),
            "--target",
            str(crops / "vnc/raw.tif"),
            "--method",
            "entropy",
            "--opt",
            "weight=0.5",
            "--out",
            str(tmp_path / "r"),
            *tiny_train,
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"entropy"' in (tmp_path / "r/log.jsonl").read_text()


def test_the_plugins_own_tests_pass_with_emda_testing(installed_example):
    env = {**os.environ, "PYTHONPATH": str(installed_example)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        env=env,
        cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
