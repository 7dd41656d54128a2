"""Fuzzing the command line (hypothesis): random small files, valid or corrupted (TIFF,
zarr, OME-Zarr, checkpoint, TOML), given to random commands with random options.

Whatever happens: never a traceback nor an internal error, never an input changed,
never a partial output left behind, and exit status 0 only when every output is
complete and reads back.
"""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from emda.cli import app
from emda.io.volume import open_volume
from emda.io.writer import write_volume
from emda.model.checkpoint import load_checkpoint

from .conftest import CROPS, adapt_on_crops

EXAMPLES = 80  # a few seconds each at most: bounded for CI


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """One valid file of every kind a command reads."""
    d = tmp_path_factory.mktemp("pool")
    raw = tifffile.imread(CROPS / "vnc/raw.tif")[:4, :64, :64]
    lab = (tifffile.imread(CROPS / "vnc/labels.tif")[:4, :64, :64] > 0).astype(np.uint8)
    lab[:, 10:20, 10:20] = 1
    prob = np.linspace(0, 1, lab.size, dtype=np.float32).reshape(lab.shape)
    for name, data in (("raw.tif", raw), ("lab.tif", lab), ("prob.tif", prob)):
        tifffile.imwrite(d / name, data, photometric="minisblack")
    write_volume(d / "raw.zarr", raw)
    write_volume(d / "img.ome.zarr", raw, voxel_size=(40.0, 5.0, 5.0))
    assert adapt_on_crops(d / "run", "--iterations", "1").exit_code == 0
    shutil.copy(d / "run" / "checkpoint.pt", d / "model.pt")
    nan = raw.astype(np.float32)
    nan[2, 5, 5] = np.nan
    tifffile.imwrite(d / "nan.tif", nan, photometric="minisblack")
    (d / "cfg.toml").write_text("[predict]\ntile-size = 64\nthreshold = 0.4\n")
    return d


# each slot mostly gets the kind of file it expects, sometimes another
VOLUMES = ["raw.tif", "raw.zarr", "img.ome.zarr", "raw.tif", "lab.tif", "prob.tif", "nan.tif"]
LABELS = ["lab.tif", "lab.tif", "lab.tif", "prob.tif", "raw.zarr"]
PREDICTIONS = ["prob.tif", "prob.tif", "lab.tif", "raw.zarr", "img.ome.zarr"]
MODELS = ["run", "model.pt"]
COMMANDS = {
    "predict": ("predict {model} {vol} --output {dest}", ["--mask {out}/m.tif",
                "--tile-size {int}", "--overlap {float}", "--threshold {float}", "--tta",
                "--planes ortho", "--block-size {int}", "--halo {int}", "--voxel-size {float}",
                "--pyramid {int}", "--config {cfg}", "--resume", "--overwrite"]),
    "evaluate": ("evaluate {pred} --labels {labels}", ["--threshold {float}", "--z-range 0:{int}",
                 "--json {out}/e.json"]),
    "ensemble": ("ensemble {pred} {vol} --output {dest}", ["--mask {out}/m.tif",
                 "--threshold {float}", "--prob-dtype float32"]),
    "clean": ("clean {pred} --mask {dest} --min-size 2", ["--max-hole {int}",
              "--sizes-from {labels}", "--threshold {float}", "--max-hole 4"]),
    "info": ("info {vol}", []),
    "recalibrate": ("recalibrate {model} --target {vol} --out {dest}", ["--batches {int}",
                    "--target-z 0:{int}"]),
    "adapt": ("adapt --source {vol} --source-labels {labels} --out {out}/a --method ft "
              "--iterations 1 --batch-size 2 --patch-size 32 --base-channels 4 --quiet",
              ["--target {vol}", "--target-z 0:{int}", "--voxel-size {float}",
               "--checkpoint-every {int}", "--seed {int}"]),
}  # fmt: skip
SLOTS = ("vol", "labels", "pred", "model", "cfg")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _corrupt(path: Path, how: str, where: float, junk: bytes) -> None:
    """Damage one file of ``path`` (a file, or a file inside a directory)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    victim = files[int(where * len(files)) % len(files)]
    data = victim.read_bytes()
    cut = int(where * len(data))
    if how == "truncate":
        victim.write_bytes(data[:cut])
    elif how == "garble":
        victim.write_bytes(data[:cut] + junk + data[cut + len(junk) :])
    elif how == "delete":
        victim.unlink()


def _reads_back(path: Path) -> None:
    if path.suffix == ".json":
        path.read_text()
    elif path.name in ("a", "r"):  # run directories
        load_checkpoint(path)
    else:
        volume = open_volume(path)
        volume.read(slice(0, 1))


token = st.one_of(
    st.integers(-3, 600).map(str),
    st.sampled_from(["0", "-1", "nan", "inf", "1e9", "", "x", "0.5", "64"]),
)


SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=SLOW_OK)
@given(
    command=st.sampled_from(sorted(COMMANDS)),
    vol=st.sampled_from(VOLUMES),
    labels=st.sampled_from(LABELS),
    pred=st.sampled_from(PREDICTIONS),
    model=st.sampled_from(MODELS),
    ext=st.sampled_from([".tif", ".zarr", ".ome.zarr"]),
    extras=st.lists(st.integers(0, 20), max_size=3),
    values=st.lists(token, min_size=6, max_size=6),
    damage=st.sampled_from(["none", "truncate", "garble", "delete"]),
    damaged=st.integers(0, 10),
    onto_input=st.sampled_from([False, False, False, True]),
    where=st.floats(0, 0.999),
    junk=st.binary(min_size=1, max_size=64),
)
def test_no_input_no_option_breaks_the_promises(
    pool, tmp_path_factory, command, vol, labels, pred, model, ext, extras, values, damage,
    damaged, onto_input, where, junk,
):  # fmt: skip
    work = tmp_path_factory.mktemp("fuzz")
    inputs, out = work / "in", work / "out"
    inputs.mkdir()
    out.mkdir()
    names = {"vol": vol, "labels": labels, "pred": pred, "model": model, "cfg": "cfg.toml"}
    for name in set(names.values()):  # only the files this example may read
        copy = shutil.copytree if (pool / name).is_dir() else shutil.copy
        copy(pool / name, inputs / name)
    base, optional = COMMANDS[command]
    chosen = [optional[i % len(optional)] for i in extras] if optional else []
    used = [slot for slot in SLOTS if "{" + slot + "}" in " ".join([base, *chosen])]
    if damage != "none":  # one of the files the command reads
        _corrupt(inputs / names[used[damaged % len(used)]], damage, where, junk)
    # or the output written over one of the command's inputs, with --overwrite
    first = "model" if command == "recalibrate" else used[0]
    dest = str(inputs / names[first]) if onto_input else f"{out}/o{ext}"
    if command == "recalibrate" and not onto_input:
        dest = f"{out}/r"
    if onto_input:
        chosen.append("--overwrite")
    numbers = iter(values)
    text = " ".join([base, *chosen])
    while "{int}" in text or "{float}" in text:
        text = text.replace("{int}", next(numbers, "1"), 1).replace(
            "{float}", next(numbers, "1"), 1
        )
    files = {k: inputs / v for k, v in names.items() if k != "cfg"}
    args = text.format(out=out, dest=dest, cfg=inputs / "cfg.toml", **files).split()
    before = _digest(inputs)
    result = CliRunner().invoke(app, args)
    said = result.output
    event(f"{command}: exit {result.exit_code}")
    event(f"damage: {damage}")
    event(f"onto input: {onto_input}")
    assert result.exception is None or isinstance(result.exception, SystemExit), said
    assert "Traceback" not in said and "internal error" not in said, (args, said)
    assert result.exit_code in (0, 1, 2), (args, said)
    assert _digest(inputs) == before, ("an input changed", args, said)
    made = sorted(p.name for p in out.iterdir())
    assert not [m for m in made if "partial" in m or m.startswith(".")], (args, made)
    if result.exit_code:
        assert made == [], ("a failed command left files", args, said, made)
    else:
        for name in made:
            _reads_back(out / name)
