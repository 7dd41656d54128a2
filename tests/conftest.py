import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
CROPS = REPO / "examples" / "data"
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture
def crops() -> Path:
    return CROPS


@pytest.fixture
def tiny_train() -> list[str]:
    """Training options small enough for a CPU test: a few steps on 64^2 patches."""
    return [
        "--iterations",
        "3",
        "--batch-size",
        "2",
        "--patch-size",
        "64",
        "--device",
        "cpu",
        "--quiet",
        "--base-channels",
        "4",
    ]


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """Install a plugin the way pip would: a module plus dist-info with an entry point."""

    def install(module: str, source: str, entry: str | None = None, dist: str | None = None):
        site = tmp_path / f"site-{module}"
        site.mkdir()
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        dist = dist or module
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[emda]\n{entry or module} = {module}\n")
        monkeypatch.syspath_prepend(str(site))
        return site

    yield install
    for name in list(sys.modules):
        if name.startswith("emda_test_"):
            del sys.modules[name]
