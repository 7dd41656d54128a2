"""The third-party path end to end: pip-install the example plugin package, then use it."""

import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from emda.cli import app
from tests.conftest import REPO, adapt_on_crops

EXAMPLE = REPO / "examples" / "emda-entropy"
runner = CliRunner()


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install a copy of the example package (pip builds in the source tree)."""
    source = tmp_path_factory.mktemp("src") / "emda-entropy"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(source)], check=True, capture_output=True)
    return site


def test_pip_installed_plugin_is_listed_and_trains(installed_example, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(installed_example))
    listed = runner.invoke(app, ["methods"])
    assert "entropy" in listed.output and "emda-entropy" in listed.output
    result = adapt_on_crops(tmp_path / "r", "--opt", "weight=0.5", method="entropy")
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
