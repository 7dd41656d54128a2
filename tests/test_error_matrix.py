"""The bad-input matrix: every case ends in one clear line (or a usage error), the right
exit status, no traceback, and nothing created or changed. docs/errors.md is generated
from this table: ``python -m tests.test_error_matrix > docs/errors.md``."""

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from .conftest import CROPS, REPO, adapt_on_crops


@dataclass(frozen=True)
class Case:
    situation: str
    command: str  # {run}: a trained run, {d}: the bad files, {c}: bundled crops, {o}: empty dir
    exit_code: int  # 0: works; 1: error line; 2: usage error
    message: str  # what the output must contain


# one method (the recipe's own refusals have their cases); a later --method replaces it
ADAPT = ("adapt --out {o}/run --iterations 1 --batch-size 2 --patch-size 64 --base-channels 4 "
         "--method ft")  # fmt: skip
SRC = "--source {c}/epfl_train/raw.tif --source-labels {c}/epfl_train/labels.tif"
TGT = "--target {c}/vnc/raw.tif"
PRED = "predict {run}"
OUT = "--output {o}/p.tif"
FT = ("finetune {run} --target {c}/vnc/raw.tif --target-labels {c}/vnc/labels.tif "
      "--out {o}/ft --iterations 1 --batch-size 2 --patch-size 64")  # fmt: skip

CASES = [
    # --- input volumes
    Case("input file missing", f"{PRED} {{d}}/missing.tif {OUT}", 1, "missing.tif: no such file"),
    Case("unsupported extension", f"{PRED} {{d}}/notes.txt {OUT}", 1,
         "notes.txt: unsupported file type '.txt'"),
    Case("truncated TIFF", f"{PRED} {{d}}/trunc.tif {OUT}", 1, "trunc.tif: not a readable TIFF"),
    Case("corrupted TIFF (not a TIFF inside)", f"{PRED} {{d}}/garbage.tif {OUT}", 1,
         "garbage.tif: not a readable TIFF"),
    Case("zarr path with no array there", f"{PRED} {{d}}/grp.zarr/nope {OUT}", 1,
         "key 'nope' in"),
    Case("zarr wrong --key", f"{PRED} {{d}}/grp.zarr --key nope {OUT}", 1, "key 'nope' in"),
    Case("zarr group without a key", f"{PRED} {{d}}/grp.zarr {OUT}", 1, "raw"),
    Case("empty (0-size) volume", f"{PRED} {{d}}/empty.tif {OUT}", 1, "volume is empty"),
    Case("NaN/Inf in float input", f"{PRED} {{d}}/nan.tif {OUT}", 1,
         "nan.tif: slice z=1 contains NaN or Inf"),
    Case("uint16 raw (normalised by percentiles)", f"{PRED} {{d}}/u16.tif {OUT}", 0, ""),
    Case("float32 raw (normalised by percentiles)", f"{PRED} {{d}}/f32.tif {OUT}", 0, ""),
    Case("2D image where a volume is expected (z = 1)", f"{PRED} {{d}}/twod.tif {OUT}", 0, ""),
    Case("volume smaller than the tile (mirror-padded)", f"{PRED} {{d}}/tiny.tif {OUT}", 0, ""),
    Case("volume smaller than the patch (mirror-padded)",
         f"{ADAPT} --source {{d}}/tiny.tif --source-labels {{d}}/tinylab.tif --method ft", 0, ""),
    # --- labels
    Case("raw and labels of different shapes",
         f"{ADAPT} --source {{c}}/vnc/raw.tif --source-labels {{d}}/labsmall.tif", 1,
         "labsmall.tif: label shape"),
    Case("labels with more than two values, no --foreground",
         f"{ADAPT} --source {{c}}/vnc/raw.tif --source-labels {{d}}/lab3.tif", 1,
         "lab3.tif: labels hold values"),
    Case("labels without foreground, for training",
         f"{ADAPT} --source {{c}}/vnc/raw.tif --source-labels {{d}}/labnone.tif", 1,
         "no foreground voxels"),
    Case("labels without foreground, for evaluation (fine: IoU of nothing)",
         "evaluate {d}/prob.tif --labels {d}/labnone.tif", 0, ""),
    Case("evaluate prediction and labels of different shapes",
         "evaluate {d}/prob.tif --labels {d}/labsmall.tif", 1, "shape"),
    # --- outputs
    Case("output already exists", f"{PRED} {{d}}/tiny.tif --output {{d}}/existing.tif", 1,
         "already exists (pass --overwrite"),
    Case("output directory does not exist", f"{PRED} {{d}}/tiny.tif --output {{o}}/no/p.tif", 1,
         "does not exist"),
    Case("output under a file, not a directory",
         f"{PRED} {{d}}/tiny.tif --output {{d}}/notes.txt/p.tif", 1, "is not a directory"),
    Case("unsupported output type", f"{PRED} {{d}}/tiny.tif --output {{o}}/p.png", 1,
         "unsupported output type"),
    Case("run directory already holds a run", f"{ADAPT} {SRC}".replace("{o}/run", "{run}"), 1,
         "already holds a run"),
    # --- nothing lost: an output never replaces an input
    Case("predict written over its own input", f"{PRED} {{d}}/full.tif --output {{d}}/full.tif "
         "--overwrite", 1, "full.tif: would overwrite the input"),
    Case("predict written over its input through a symlink and ..",
         f"{PRED} {{d}}/full.tif --output {{d}}/link/../link.tif --overwrite", 1,
         "would overwrite the input"),
    Case("predict's mask over its zarr input", f"{PRED} {{d}}/root.zarr --mask {{d}}/root.zarr "
         "--overwrite", 1, "would overwrite the input"),
    Case("predict written over the store holding its input",
         f"{PRED} {{d}}/grp.zarr/raw --output {{d}}/grp.zarr --overwrite", 1,
         "would overwrite the input"),
    Case("predict over the checkpoint it reads", f"{PRED} {{d}}/tiny.tif --output "
         "{run}/checkpoint.pt --overwrite", 1, "would overwrite the input"),
    Case("finetune written into the run it continues", f"{FT} --overwrite".replace(
         "{o}/ft", "{run}"), 1, "would overwrite the input"),
    Case("recalibrate written into the run it reads",
         "recalibrate {run} --target {d}/tiny.tif --out {run} --overwrite", 1,
         "would overwrite the input"),
    Case("evaluate's report written over the labels", "evaluate {d}/prob.tif --labels "
         "{d}/labnone.tif --json {d}/labnone.tif --overwrite", 1, "would overwrite the input"),
    Case("clean written over the labels it takes sizes from",
         "clean {d}/prob.tif --mask {d}/labnone.tif --sizes-from {d}/labnone.tif --overwrite",
         1, "would overwrite the input"),
    Case("an output that is an existing directory",
         f"{PRED} {{d}}/tiny.tif --output {{d}}/dirout.tif --overwrite", 1, "is a directory"),
    Case("a zarr output over a directory that is not zarr",
         f"{PRED} {{d}}/tiny.tif --output {{d}}/plain.zarr --overwrite", 1,
         "is a directory that is not zarr"),
    # --- nothing silently wrong: NaN, complex values, unfinished outputs, bad metadata
    Case("NaN in the source", f"{ADAPT} --source {{d}}/nan.tif --source-labels "
         "{d}/nanlab.tif", 1, "nan.tif: slice z=1 contains NaN or Inf"),
    Case("NaN in the target (adapt's target batch norm)", f"{ADAPT} {SRC} --target {{d}}/nan.tif",
         1, "nan.tif: slice z=1 contains NaN or Inf"),
    Case("NaN in recalibrate's target", "recalibrate {run} --target {d}/nan.tif --out {o}/r", 1,
         "nan.tif: slice z=1 contains NaN or Inf"),
    Case("checkpoint with NaN weights", f"predict {{d}}/nanw.pt {{d}}/tiny.tif {OUT}", 1,
         "hold NaN or Inf"),
    Case("checkpoint whose configuration does not match its weights",
         f"predict {{d}}/mismatch.pt {{d}}/tiny.tif {OUT}", 1, "does not match its weights"),
    Case("checkpoint describing an absurdly large network",
         f"predict {{d}}/huge.pt {{d}}/tiny.tif {OUT}", 1, "larger than any emda model"),
    Case("complex-valued TIFF", f"{PRED} {{d}}/complex.tif {OUT}", 1, "are not an image"),
    Case("corrupt zarr chunk", f"{PRED} {{d}}/corrupt.zarr {OUT}", 1,
         "corrupt.zarr: unreadable data"),
    Case("zarr input with missing chunks (read as zeros: said)", f"{PRED} {{d}}/sparse.zarr {OUT}",
         0, "1 of its 2 chunks are missing on disk"),
    Case("OME-Zarr whose dataset is missing", f"{PRED} {{d}}/noset.ome.zarr {OUT}", 1,
         "names a dataset that is not there"),
    Case("negative voxel size in the file's metadata", f"{PRED} {{d}}/negvox.tif {OUT}", 1,
         "negvox.tif: the file's voxel size"),
    Case("ensemble of an unfinished output", "ensemble {d}/part.zarr {d}/prob.tif "
         "--output {o}/e.tif", 1, "part.zarr: is an unfinished output"),
    Case("clean of an unfinished output", "clean {d}/part.zarr --mask {o}/m.tif --min-size 1 "
         "--max-hole 1", 1, "part.zarr: is an unfinished output"),
    Case("evaluate logits, not probabilities", "evaluate {d}/logits.tif --labels "
         "{d}/tinylab.tif", 1, "logits.tif: values outside [0, 1]"),
    Case("--target-z without --target", f"{ADAPT} {SRC} --target-z 0:2", 1,
         "--target-z needs --target"),
    Case("--config that is not UTF-8", f"{PRED} {{d}}/tiny.tif {OUT} --config {{d}}/latin1.toml",
         2, "not UTF-8 text"),
    Case("--config that is a directory", f"{PRED} {{d}}/tiny.tif {OUT} --config {{d}}/dirout.tif",
         2, "is a directory"),
    # --- checkpoints
    Case("checkpoint that is not a checkpoint (random bytes)",
         f"predict {{d}}/garbage.pt {{d}}/tiny.tif {OUT}", 1, "garbage.pt: "),
    Case("truncated checkpoint", f"predict {{d}}/truncated.pt {{d}}/tiny.tif {OUT}", 1,
         "corrupted or truncated checkpoint"),
    Case("checkpoint from an incompatible format version",
         f"predict {{d}}/future.pt {{d}}/tiny.tif {OUT}", 1, "cannot be read by emda"),
    Case("torch file that is not an emda checkpoint",
         f"predict {{d}}/plain.pt {{d}}/tiny.tif {OUT}", 1, "not an emda checkpoint"),
    Case("checkpoint whose pickle would run code", f"predict {{d}}/evil.pt {{d}}/tiny.tif {OUT}",
         1, "refused to load"),
    Case("run directory without a checkpoint", f"predict {{o}} {{d}}/tiny.tif {OUT}", 1,
         "no such checkpoint"),
    # --- methods and options
    Case("unknown method", f"{ADAPT} {SRC} --method nosuch", 1, "--method nosuch: unknown method"),
    Case("the recipe without a target", f"adapt --out {{o}}/run {SRC}", 1,
         "--target is required by the recipe"),
    Case("a recipe stage with an unknown method", f"adapt --out {{o}}/run {SRC} {TGT} "
         "--recipe {d}/badmethod.toml", 1, "stage 1 (nosuch): --method nosuch: unknown method"),
    Case("a recipe stage option that does not exist", f"adapt --out {{o}}/run {SRC} {TGT} "
         "--recipe {d}/badopt.toml", 1, "--opt wings: unknown option for method 'ynet'"),
    Case("a voxel size of zero", f"{ADAPT} {SRC} --voxel-size 0", 1,
         "--voxel-size 0: expected three positive numbers"),
    Case("a negative target voxel size", f"{ADAPT} {SRC} {TGT} --target-voxel-size 50,-5,5", 1,
         "--target-voxel-size 50,-5,5: expected three positive numbers"),
    Case("labels for fewer sources than given", f"{ADAPT} {SRC} --source {{c}}/vnc/raw.tif", 1,
         "--source-labels: 1 given for 2 --source volumes"),
    Case("unknown --opt", f"{ADAPT} {SRC} {TGT} --method mmd --opt nosuch=1", 1, "nosuch"),
    Case("ill-typed --opt", f"{ADAPT} {SRC} {TGT} --method mmd --opt samples=many", 1, "samples"),
    Case("method needs a target that is not given", f"{ADAPT} {SRC} --method mmd", 1,
         "--target is required"),
    Case("--fraction 0", f"{FT} --fraction 0", 1, "--fraction 0.0: must be in (0, 1]"),
    Case("--fraction above 1", f"{FT} --fraction 1.5", 1, "--fraction 1.5: must be in (0, 1]"),
    Case("zero iterations", f"{ADAPT} {SRC} --iterations 0", 1, "--iterations must be positive"),
    Case("negative batch size", f"{ADAPT} {SRC} --batch-size -2", 1,
         "--batch-size must be positive"),
    Case("patch size not a multiple of 2^depth", f"{ADAPT} {SRC} --patch-size 50", 1,
         "--patch-size 50: must be a multiple of 16"),
    Case("negative augmentation amplitude", f"{ADAPT} {SRC} --noise -1", 1, "--noise must be >= 0"),
    Case("held-out source slices that are also trained on",
         f"{ADAPT} {SRC} --source-z 0:12 --source-val-z 10:16", 1,
         "--source-val-z 10:16: slices 10-11 are also trained on (--source-z 0:12)"),
    Case("held-out source slices past the stack", f"{ADAPT} {SRC} --source-z 0:12 "
         "--source-val-z 12:99", 1, "--source-val-z 12:99: expected START:STOP"),
    Case("source slices past the stack", f"{ADAPT} {SRC} --source-z 0:99", 1,
         "--source-z 0:99: expected START:STOP with 0 <= START < STOP <="),
    Case("target slices past the stack", f"{ADAPT} {SRC} {TGT} --method mmd --target-z 5:99",
         1, "--target-z 5:99: expected START:STOP with 0 <= START < STOP <="),
    Case("finetune slices that are not a range", f"{FT} --target-z 3", 1,
         "--target-z 3: expected START:STOP"),
    Case("a removed option", f"{ADAPT} {SRC} --smooth-objects 0.5", 2, "No such option"),
    Case("amplitude mixing weight above 1", f"{ADAPT} {SRC} {TGT} --amplitude-mix 1.5", 1,
         "--amplitude-mix must be in [0, 1]"),
    Case("amplitude mixing without a target to take the style from",
         f"{ADAPT} {SRC} --amplitude-mix 0.5", 1, "--amplitude-mix needs --target"),
    Case("target patches from three planes of a 2D target",
         f"{ADAPT} {SRC} --target {{d}}/twod.tif --method mmd --target-planes ortho", 1,
         "twod.tif is a 2D image, it has only (y, x)"),
    Case("target patches from three planes without a target",
         f"{ADAPT} {SRC} --target-planes ortho", 1, "--target-planes needs --target"),
    Case("tile size zero", f"{PRED} {{d}}/tiny.tif {OUT} --tile-size 0", 1, "tile"),
    Case("overlap >= 1", f"{PRED} {{d}}/tiny.tif {OUT} --overlap 1", 1, "overlap"),
    Case("block size not a multiple of 256", f"{PRED} {{d}}/tiny.tif {OUT} --block-size 300", 1,
         "--block-size 300"),
    Case("negative halo", f"{PRED} {{d}}/tiny.tif {OUT} --halo -1", 1, "--halo -1"),
    Case("--pyramid with a TIFF output", f"{PRED} {{d}}/tiny.tif {OUT} --pyramid 2", 1,
         "--pyramid 2"),
    Case("--workers 0", f"{PRED} {{d}}/tiny.tif {OUT} --workers 0", 1, "--workers 0"),
    Case("--planes ortho on a 2D image", f"{PRED} {{d}}/twod.tif {OUT} --planes ortho", 1,
         "twod.tif is a 2D image"),
    Case("unknown --planes (typer)", f"{PRED} {{d}}/tiny.tif {OUT} --planes zx", 2,
         "Invalid value"),
    Case("--scheduler with --workers", f"{PRED} {{d}}/tiny.tif {OUT} --workers 2 --scheduler "
         "tcp://127.0.0.1:1", 1, "--scheduler and --workers"),
    Case("threshold outside [0, 1]", f"{PRED} {{d}}/tiny.tif {OUT} --mask {{o}}/m.tif "
         "--threshold 1.5", 1, "--threshold 1.5: must be in [0, 1]"),
    Case("evaluate with more --labels than predictions, fewer than one each",
         "evaluate {d}/prob.tif {d}/prob.tif {d}/prob.tif --labels {d}/labnone.tif --labels "
         "{d}/labnone.tif", 1, "--labels: 2 given for 3 predictions"),
    Case("evaluate threshold outside [0, 1]",
         "evaluate {d}/prob.tif --labels {d}/labnone.tif --threshold -1", 1, "threshold"),
    Case("bad --voxel-size", f"{PRED} {{d}}/tiny.tif {OUT} --voxel-size 5,-1,2", 1,
         "--voxel-size"),
    Case("--resume together with --overwrite", f"{PRED} {{d}}/tiny.tif {OUT} --resume --overwrite",
         1, "contradict"),
    Case("option of the wrong type (typer)", f"{ADAPT} {SRC} --iterations many", 2,
         "Invalid value"),
    Case("a removed command", "smooth {d}/tiny.tif --output {o}/s.tif --sigma 1", 2,
         "No such command"),
    Case("ensemble of a single prediction", "ensemble {d}/prob.tif --output {o}/e.tif", 1,
         "at least two predictions"),
    Case("ensemble with nothing to write", "ensemble {d}/prob.tif {d}/full.tif", 1,
         "nothing to write"),
    Case("ensemble of predictions of different shapes",
         "ensemble {d}/prob.tif {d}/tiny.tif --output {o}/e.tif", 1, "tiny.tif: shape (2, 50, 50)"),
    Case("ensemble given one prediction twice",
         "ensemble {d}/prob.tif {d}/prob.tif --output {o}/e.tif", 1, "prob.tif: given twice"),
    Case("ensemble written over one of its inputs",
         "ensemble {d}/prob.tif {d}/full.tif --output {d}/full.tif --overwrite", 1,
         "would overwrite the input"),
    Case("ensemble of logits, not probabilities",
         "ensemble {d}/tiny.tif {d}/logits.tif --output {o}/e.tif", 1,
         "logits.tif (z 0-2): values outside [0, 1]"),
    Case("clean without sizes", "clean {d}/prob.tif --mask {o}/m.tif", 1,
         "needs --sizes-from LABELS"),
    Case("clean with sizes from labels that hold no inner object",
         "clean {d}/prob.tif --mask {o}/m.tif --sizes-from {d}/labnone.tif", 1,
         "labnone.tif: no labelled object inside"),
    Case("instances of a label image", "instances {d}/labels.zarr --output {o}/l.tif", 1,
         "labels.zarr: is a label image, not a probability map or mask"),
    Case("instances with a negative minimum size", "instances {d}/prob.tif --output {o}/l.tif "
         "--min-size -5", 1, "--min-size -5.0: must be a positive volume in nm^3"),
    Case("instances with a zero minimum size", "instances {d}/prob.tif --output {o}/l.tif "
         "--min-size 0", 1, "--min-size 0.0: must be a positive volume in nm^3"),
    Case("instances' minimum size without a voxel size", "instances {d}/prob.tif --output "
         "{o}/l.tif --min-size 1e6", 1, "has no voxel size: give --voxel-size"),
    Case("instances written over the prediction", "instances {d}/prob.tif --output "
         "{d}/prob.tif --overwrite", 1, "would overwrite the input"),
    Case("measure a probability map, not labels", "measure {d}/logits.tif", 1,
         "logits.tif: values of type float32 are not a label image"),
    Case("measure's CSV written over the labels", "measure {d}/labels.zarr --csv "
         "{d}/labels.zarr --overwrite", 1, "would overwrite the input"),
    Case("OME-Zarr in a length unit emda does not know", f"{PRED} {{d}}/furlong.ome.zarr {OUT}",
         1, "unknown length unit 'furlong'"),
    Case("multichannel OME-Zarr without --channel", f"{PRED} {{d}}/twoch.ome.zarr {OUT}", 1,
         "has 2 channels (axis 'c'); choose one with --channel N"),
    Case("--channel beyond the channels", f"{PRED} {{d}}/twoch.ome.zarr {OUT} --channel 5", 1,
         "--channel 5: "),
    Case("--channel on a TIFF", f"{PRED} {{c}}/vnc/raw.tif {OUT} --channel 0", 1,
         "applies to OME-Zarr images"),
    Case("export to a file type no format has", "export {run} --output {o}/m.h5", 1,
         "give --format"),
    Case("export written over the run's checkpoint", "export {run} --output {run}/checkpoint.pt "
         "--overwrite", 1, "would overwrite the input"),
    Case("measure negative labels", "measure {d}/neg.tif", 1, "negative labels"),
    Case("unknown dataset to fetch", "data fetch nosuch --to {o}", 2, "unknown dataset nosuch"),
]  # fmt: skip
if not torch.cuda.is_available():
    CASES.append(Case("--device cuda without a GPU", f"{PRED} {{d}}/tiny.tif {OUT} --device cuda",
                      1, "cuda"))  # fmt: skip


class Evil:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    raw = tifffile.imread(CROPS / "vnc/raw.tif")
    lab = (tifffile.imread(CROPS / "vnc/labels.tif") > 0).astype(np.uint8)
    tifffile.imwrite(d / "full.tif", raw)
    data = (d / "full.tif").read_bytes()
    (d / "trunc.tif").write_bytes(data[: len(data) // 2])
    (d / "garbage.tif").write_bytes(b"not a tiff at all")
    (d / "notes.txt").write_text("x")
    (d / "badmethod.toml").write_text('[recipe]\n[[recipe.stage]]\nmethod = "nosuch"\n')
    (d / "badopt.toml").write_text('[recipe]\n[[recipe.stage]]\nmethod = "ynet"\n'
                                   'opt = { wings = 2 }\n')  # fmt: skip
    (d / "existing.tif").write_bytes(data)
    tifffile.imwrite(d / "lab3.tif", lab + (np.arange(lab.size).reshape(lab.shape) % 3 == 0) * 2)
    tifffile.imwrite(d / "labnone.tif", np.zeros_like(lab))
    tifffile.imwrite(d / "labsmall.tif", lab[:, :100, :100])
    tifffile.imwrite(d / "prob.tif", np.zeros_like(lab))
    tifffile.imwrite(d / "empty.tif", np.zeros((0, 10, 10), np.uint8))
    tifffile.imwrite(d / "tiny.tif", raw[:2, :50, :50])
    tifffile.imwrite(d / "tinylab.tif", lab[:2, :50, :50] | (np.eye(50, dtype=np.uint8)[None]))
    f = raw.astype(np.float32)
    f[1, 5, 5] = np.nan
    tifffile.imwrite(d / "nan.tif", f[:3], photometric="minisblack")
    tifffile.imwrite(d / "u16.tif", raw[:2].astype(np.uint16) * 200)
    tifffile.imwrite(d / "f32.tif", raw[:2].astype(np.float32) / 255)
    tifffile.imwrite(d / "twod.tif", raw[0])
    tifffile.imwrite(d / "logits.tif", np.full((2, 50, 50), -2.0, np.float32))
    zarr.open_group(str(d / "grp.zarr"), mode="w").create_array("raw", data=raw[:2])
    (d / "garbage.pt").write_bytes(b"hello, not a checkpoint")
    run = d / "run"
    assert adapt_on_crops(run, "--iterations", "1").exit_code == 0
    ckpt = (run / "checkpoint.pt").read_bytes()
    (d / "truncated.pt").write_bytes(ckpt[: len(ckpt) // 2])
    future = torch.load(run / "checkpoint.pt", weights_only=True)
    future["format_version"] = 99
    torch.save(future, d / "future.pt")
    torch.save({"a": torch.zeros(1)}, d / "plain.pt")
    torch.save({"format": "emda-checkpoint", "x": Evil()}, d / "evil.pt")
    _hostile_files(d, raw, lab, future)
    return d


def _hostile_files(d: Path, raw: np.ndarray, lab: np.ndarray, ckpt: dict) -> None:
    """Files that once made emda lose or corrupt data (issue: nothing lost)."""
    (d / "sub").mkdir()
    (d / "link").symlink_to(d / "sub", target_is_directory=True)  # link/.. is d
    (d / "link.tif").symlink_to(d / "full.tif")
    zarr.create_array(str(d / "root.zarr"), data=raw[:2, :64, :64], chunks=(1, 64, 64))
    (d / "dirout.tif").mkdir()
    (d / "plain.zarr").mkdir()
    (d / "plain.zarr" / "notes.txt").write_text("a user's file")
    tifffile.imwrite(d / "nanlab.tif", lab[:3])
    for name, change in (
        ("nanw.pt", lambda c: next(v for v in c["state_dict"].values()
                                   if v.is_floating_point()).view(-1).__setitem__(0, np.nan)),
        ("mismatch.pt", lambda c: c["model_config"].update(base_channels=8)),
        ("huge.pt", lambda c: c["model_config"].update(depth=10_000)),
    ):  # fmt: skip
        crafted = {
            **ckpt,
            "format_version": 1,
            "model_config": dict(ckpt["model_config"]),
            "state_dict": {k: v.clone() for k, v in ckpt["state_dict"].items()},
        }
        change(crafted)
        torch.save(crafted, d / name)
    tifffile.imwrite(d / "complex.tif", np.ones((2, 8, 8), np.complex64))
    zarr.create_array(str(d / "corrupt.zarr"), data=raw[:2, :64, :64], chunks=(1, 64, 64))
    for chunk in (d / "corrupt.zarr").rglob("c/0/0/0"):
        chunk.write_bytes(b"\x00garbage, not a compressed chunk")
    sparse = zarr.create_array(str(d / "sparse.zarr"), shape=(2, 64, 64), chunks=(1, 64, 64),
                               dtype="uint8")  # fmt: skip
    sparse[0] = raw[0, :64, :64]
    group = zarr.open_group(str(d / "noset.ome.zarr"), mode="w")
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}],
                    }
                ],
            }
        ],
    }
    for name, unit, data in (
        ("furlong.ome.zarr", "furlong", raw[:2, :64, :64]),
        ("twoch.ome.zarr", "nanometer", np.stack([raw[:2, :64, :64]] * 2)),
    ):
        group = zarr.open_group(str(d / name), mode="w")
        group.create_array("0", data=data)
        space = [{"name": a, "type": "space", "unit": unit} for a in "zyx"]
        axes = space if data.ndim == 3 else [{"name": "c", "type": "channel"}, *space]
        group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
            {"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1] * data.ndim}]}]}]}  # fmt: skip
    tifffile.imwrite(d / "negvox.tif", raw[:2, :50, :50], imagej=True, resolution=(0.2, 0.2),
                     metadata={"spacing": -5.0, "unit": "nm"})  # fmt: skip
    part = zarr.create_array(str(d / "part.zarr"), shape=tuple(lab.shape), dtype="uint8",
                             chunks=(1, *lab.shape[1:]))  # fmt: skip
    part.attrs.update({"emda_complete": False})
    labels = zarr.create_array(
        str(d / "labels.zarr"), data=np.arange(8, dtype=np.uint32).reshape(2, 2, 2)
    )
    labels.attrs.update({"emda_kind": "labels"})
    tifffile.imwrite(d / "neg.tif", -np.ones((2, 8, 8), np.int32))
    (d / "latin1.toml").write_bytes(b"threshold = 0.5\n# caf\xe9\n")


def _snapshot(d: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in d.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c.situation for c in CASES])
def test_bad_input(case, files, tmp_path, monkeypatch, caplog):
    from typer.testing import CliRunner

    from emda.cli import app

    monkeypatch.delenv("EMDA_DEBUG", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    args = shlex.split(case.command.format(run=files / "run", d=files, c=CROPS, o=out))
    before = _snapshot(files)
    result = CliRunner().invoke(app, args)
    text = result.output + caplog.text  # warnings go through logging
    assert result.exit_code == case.exit_code, text
    assert "Traceback" not in text
    assert case.message in " ".join(text.split()), text
    if case.exit_code == 1:
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and case.message in errors[0], text
    if case.exit_code:
        assert list(out.iterdir()) == [], "an error left files behind"
    assert _snapshot(files) == before, "an input or existing file was changed"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only directories")
def test_output_directory_not_writable(files, tmp_path):
    from typer.testing import CliRunner

    from emda.cli import app

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = CliRunner().invoke(app, ["predict", str(files / "run"), str(files / "tiny.tif"),
                                          "--output", str(locked / "p.tif")])  # fmt: skip
        assert result.exit_code == 1 and "is not writable" in result.output
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def render() -> str:
    lines = [
        "# What emda says when the input is wrong",
        "",
        "Generated from `tests/test_error_matrix.py`, which runs every row "
        "(`python -m tests.test_error_matrix > docs/errors.md` regenerates this page). "
        "In every error case emda prints one line starting with `error:` (or a typer usage "
        "message, exit status 2), exits non-zero, shows no traceback (set `EMDA_DEBUG=1` "
        "for one) and leaves no file created or changed.",
        "",
        "| situation | command (abridged) | exit | emda says (contains) |",
        "|---|---|---|---|",
    ]
    for c in CASES:
        short = c.command.replace(ADAPT, "adapt …").replace(SRC, "--source … --source-labels …")
        short = short.replace(FT, "finetune {run} …").replace(OUT, "--output …")
        message = f"`{c.message}`" if c.message else "works"
        lines.append(f"| {c.situation} | `emda {short}` | {c.exit_code} | {message} |")
    lines += [
        "",
        "Covered by other tests: an output directory that is not writable (this file; "
        "skipped when run as root, who may write anywhere), a plugin raising at import or "
        "at registration (`tests/test_registry.py`: reported by plugin name, other "
        "methods keep working), "
        "`--resume` with changed settings, on a finished run or with nothing saved "
        "(`tests/test_resume.py`, `tests/test_predict_resume.py`), an unknown setting in a "
        "`--config` file (`tests/test_cli.py`), a corrupt or missing file in `emda data "
        "fetch` (`tests/test_datasets.py`); a second command writing an output or run "
        "directory that another is writing (refused, naming the holder), a lock left by a "
        "killed process (taken over), a run killed before it saved anything (a plain rerun "
        "clears it), a method failing in its loss, a plugin calling `sys.exit()` at import, "
        "a full disk, an unforeseen failure (`error: internal error (...)`, exit status 70) "
        "and `--resume` after the input's content changed (`tests/test_safety.py`). "
        "`tests/test_fuzz.py` gives random valid and corrupted files and options to every "
        "command and checks that none of them shows a traceback, changes an input, or "
        "leaves a partial output.",
        "",
    ]
    return "\n".join(lines)


def test_docs_errors_md_is_generated_from_this_table():
    assert (REPO / "docs" / "errors.md").read_text() == render(), (
        "regenerate: python -m tests.test_error_matrix > docs/errors.md"
    )


if __name__ == "__main__":
    print(render(), end="")
