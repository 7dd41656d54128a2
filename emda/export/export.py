"""``emda export``: a run's network as TorchScript, ONNX or a bioimage.io package.

Every file is checked before it appears under its name: TorchScript and ONNX against
PyTorch on a tile of another size than the one traced (within
:data:`emda.export.formats.TOLERANCE`), a bioimage.io package with bioimageio.core's
model test when that package is installed. A failed check leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emda.errors import EmdaError
from emda.export.formats import TOLERANCE, export_onnx, export_torchscript
from emda.export.network import load_network
from emda.safety.paths import check_reports

#: format -> the suffix its output takes
FORMATS = {"bioimageio": ".zip", "onnx": ".onnx", "torchscript": ".pt"}


@dataclass(frozen=True)
class ExportResult:
    format: str
    output: Path
    weights: list[str]
    max_difference: float | None  # from PyTorch, on a tile of another size
    test: str | None  # bioimageio.core's verdict, None when it is not installed


def format_of(output: str | Path, format: str | None) -> str:
    """The format asked for, or the one the output's suffix names."""
    if format is not None:
        if format not in FORMATS:
            raise EmdaError(f"--format {format}: not one of {', '.join(FORMATS)}")
        return format
    suffix = Path(output).suffix.lower()
    for name, ending in FORMATS.items():
        if suffix == ending:
            return name
    raise EmdaError(f"--output {output}: give --format ({', '.join(FORMATS)}) or a "
                    f"{', '.join(FORMATS.values())} file name")  # fmt: skip


def export_model(
    run: str | Path,
    output: str | Path,
    format: str | None = None,
    *,
    name: str | None = None,
    authors: list[str] | None = None,
    license_id: str = "CC-BY-4.0",
    sample: str | Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export the network of ``run`` (a run directory or checkpoint.pt) to ``output``."""
    format = format_of(output, format)
    output = Path(output)
    check_reports({"--output": output}, [run, sample], overwrite)
    if not output.parent.is_dir():
        raise EmdaError(f"--output {output}: directory {output.parent} does not exist")
    checkpoint, network = load_network(run)
    with _quiet():
        if format == "torchscript":
            difference = export_torchscript(checkpoint, network, output)
            return _checked(ExportResult(format, output, [format], difference, None))
        if format == "onnx":
            difference = export_onnx(checkpoint, network, output)
            return _checked(ExportResult(format, output, [format], difference, None))
        return _bioimageio(checkpoint, network, output, name or f"emda {Path(run).name}",
                           authors or [getpass.getuser()], license_id, sample)  # fmt: skip


def _bioimageio(checkpoint, network, output: Path, name, authors, license_id, sample):
    try:
        from emda.export.bioimageio import export_bioimageio
    except ImportError:
        raise EmdaError("--format bioimageio needs bioimageio.spec: pip install "
                        "'emda[export]'") from None  # fmt: skip
    tmp = output.with_name(f".{output.name}.partial.zip")
    try:
        weights = export_bioimageio(checkpoint, network, tmp, name=name, authors=authors,
                                    license_id=license_id, sample=sample)  # fmt: skip
        verdict = _test_package(tmp)
        os.replace(tmp, output)
    except ValueError as exc:  # pydantic's ValidationError: a field the spec refuses
        raise EmdaError(f"--output {output}: not a valid bioimage.io model "
                        f"({str(exc).splitlines()[0]})") from None  # fmt: skip
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportResult("bioimageio", output, weights, None, verdict)


def _test_package(path: Path) -> str | None:
    """bioimageio.core's model test: every weight format reproduces the test output."""
    try:
        from bioimageio.core import test_model
    except ImportError:
        return None
    summary = test_model(str(path))
    if summary.status != "passed":
        failed = next((d for d in summary.details if d.status != "passed"), None)
        what = f"{failed.name}: {failed.errors[0].msg}" if failed and failed.errors else ""
        raise EmdaError(f"the bioimage.io model test failed ({what or summary.status})")
    return "passed"


def _checked(result: ExportResult) -> ExportResult:
    if result.max_difference is not None and result.max_difference > TOLERANCE:
        result.output.unlink(missing_ok=True)
        raise EmdaError(f"--format {result.format}: the exported network differs from "
                        f"PyTorch by {result.max_difference:.2g} (> {TOLERANCE})")  # fmt: skip
    return result


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Tracing and the ONNX exporter talk about things that do not concern the user
    (the U-Net's shape check as a constant, torchvision's absent operators)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
