import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

# pytest-xdist workers start with COLUMNS=80, and rich fixes a Console's width from it when
# emda.cli builds its consoles at import; the CLI tests set the width per invocation instead
os.environ.pop("COLUMNS", None)

# two threads per test process, fewer when pytest-xdist runs several side by side
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))

REPO = Path(__file__).resolve().parents[1]
CROPS = REPO / "emda" / "demo_data"
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture
def crops() -> Path:
    return CROPS


# Training options small enough for a CPU test: a few steps of a narrow U-Net on 64^2 patches.
TINY_TRAIN = ["--iterations", "3", "--batch-size", "2", "--patch-size", "64", "--device", "cpu",
              "--quiet", "--base-channels", "4"]  # fmt: skip


@pytest.fixture
def tiny_train() -> list[str]:
    return list(TINY_TRAIN)


def adapt_on_crops(out: Path, *extra: str, method: str = "ft", source: Path | None = None,
                   target: Path | None = CROPS / "vnc/raw.tif"):  # fmt: skip
    """``emda adapt`` EPFL crop -> VNC crop with the tiny budget; returns the CliRunner result.

    ``extra`` options come last, so they override the tiny defaults.
    """
    from typer.testing import CliRunner

    from emda.cli import app

    args = ["adapt", "--out", str(out), "--method", method]
    if "--source" not in extra:  # --source repeats (several sources): one given replaces ours
        args += ["--source", str(source or CROPS / "epfl_train/raw.tif"),
                 "--source-labels", str(CROPS / "epfl_train/labels.tif")]  # fmt: skip
    if target is not None:
        args += ["--target", str(target)]
    return CliRunner().invoke(app, [*args, *TINY_TRAIN, *extra])


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
