"""The project's shape: what a newcomer and a plugin author can rely on."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PUBLIC_FOR_PLUGINS = {"emda", "emda.methods"}


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((REPO / folder).rglob("*.py"))]


def test_no_module_over_400_lines_and_no_builtin_method_over_150():
    for path in _python_files("emda", "plugins"):
        lines = len(path.read_text().splitlines())
        limit = 150 if "plugins" in path.parts and path.name != "__init__.py" else 400
        assert lines <= limit, f"{path.relative_to(REPO)}: {lines} lines"


def test_builtin_methods_import_only_the_public_api():
    for path in _python_files("plugins"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("emda"):
                assert node.module in PUBLIC_FOR_PLUGINS, f"{path.name}: from {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("emda."), f"{path.name}: {alias.name}"


def test_no_lab_log_in_the_product():
    pattern = re.compile(r"stop [0-9]|pre-regist|seeds? [0-9]|FINDINGS", re.IGNORECASE)
    for path in _python_files("emda", "plugins"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path.relative_to(REPO)}:{n}: {line.strip()}"


def test_cli_reference_is_current():
    from emda.cli.reference import reference

    assert (REPO / "docs/cli.md").read_text() == reference(), (
        "docs/cli.md is stale: python -m emda.cli.reference > docs/cli.md"
    )


def test_help_carries_no_benchmark_numbers():
    from emda.cli.reference import reference

    assert not re.search(r"IoU [0-9]|[0-9] IoU|measured|benchmarks/", reference())


def test_readme_starts_with_install_and_a_quickstart_and_stays_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    head = "\n".join(lines[:60])
    assert "pip install" in head and "emda adapt" in head and "emda predict" in head
    assert (REPO / "LICENSE").is_file() and (REPO / "CITATION.cff").is_file()


def test_the_demo_crops_ship_with_the_package():
    """`emda demo` finds its crops inside the package, and the package data that goes
    into a wheel names every one of them."""
    import tomllib

    from emda.demo import default_data_dir

    crops = {default_data_dir() / c / f"{k}.tif" for c in ("epfl_train", "epfl_test", "vnc")
             for k in ("raw", "labels")}  # fmt: skip
    assert all(path.is_file() for path in crops)
    package = REPO / "emda"
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["emda"]  # fmt: skip
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    assert crops <= shipped and default_data_dir() / "README.md" in shipped


@pytest.mark.slow
def test_the_api_example_runs(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(REPO / "examples/api_quickstart.py"), "--out", str(tmp_path),
         "--iterations", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "IoU" in done.stdout and (tmp_path / "vnc_prob.tif").is_file()
