"""``emda evaluate``: score predictions against ground truth, as a table, JSON or CSV."""

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emda.cli.common import ConfigOpt, OverwriteOpt, app, out, user_errors
from emda.safety.paths import check_reports, write_atomically

SCORES = ("iou", "dice", "precision", "recall")
CSV_COLUMNS = ("prediction", "truth", "z", "threshold", *SCORES, "tp", "fp", "fn", "tn")


@app.command(no_args_is_help=True)
@user_errors
def evaluate(
    predictions: Annotated[
        list[str], typer.Argument(help="Prediction volumes (probabilities or masks).")
    ],
    labels: Annotated[
        list[str],
        typer.Option(
            "--labels",
            "-l",
            help="Ground truth (a mask or a label image): once for every prediction, or once "
            "per prediction in order.",
        ),
    ],
    threshold: Annotated[float, typer.Option(help="Probability threshold in [0, 1].")] = 0.5,
    z_range: Annotated[
        str | None, typer.Option(help="Score only slices START:STOP (half-open).")
    ] = None,
    foreground: Annotated[
        float | None, typer.Option(help="Foreground label value if not a {0,1}/{0,255} mask.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Array inside zarr predictions.")] = None,
    labels_key: Annotated[
        str | None, typer.Option(help="Array inside a zarr ground truth.")
    ] = None,
    per_slice: Annotated[bool, typer.Option(help="Also report every slice.")] = False,
    instances: Annotated[
        bool,
        typer.Option(
            "--instances",
            help="Also match objects one to one: F1 and AP at IoU thresholds of 0.5 and 0.75, "
            "panoptic quality (the truth's objects: its labels, or a mask's connected "
            "components).",
        ),
    ] = False,
    min_size: Annotated[
        float | None,
        typer.Option(help="With --instances: drop predicted objects under this size (nm^3)."),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write results as JSON: one entry per prediction, each with its schema "
            "(emda-evaluate/1) and pixel counts (per slice too with --per-slice).",
        ),
    ] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write results as CSV.")] = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Score predictions against ground truth: IoU, Dice, precision, recall."""
    from emda import api

    check_reports({"--json": json_out, "--csv": csv_out}, [*predictions, *labels], overwrite)
    results = api.evaluate(
        predictions, labels, threshold=threshold, z_range=z_range, foreground=foreground,
        key=key, labels_key=labels_key, instances=instances, min_size=min_size,
    )  # fmt: skip
    one = len(set(labels)) == 1
    against = f"against {labels[0]}" if one else "each against its --labels"
    table = Table(title=against + (f" (z {z_range})" if z_range else ""))
    for col in ("prediction", "IoU", "Dice", "precision", "recall"):
        table.add_column(col, justify="left" if col == "prediction" else "right", overflow="fold")
    for r in results:
        rows = [(r.prediction, r.total, None)]
        rows += [(f"  z={z}", c, "dim") for z, c in r.per_slice] if per_slice else []
        for name, counts, style in rows:
            s = counts.scores()
            table.add_row(name, *(f"{s[k]:.4f}" for k in SCORES), style=style)
    out.print(table)
    if instances:
        out.print(instance_table(results, one))
    if json_out is not None:
        text = json.dumps([r.to_dict(per_slice) for r in results], indent=2)
        write_atomically(json_out, lambda tmp: Path(tmp).write_text(text))
    if csv_out is not None:
        table_text = csv_text(results, per_slice)
        write_atomically(csv_out, lambda tmp: Path(tmp).write_text(table_text))


def instance_table(results, one_truth: bool = True) -> Table:
    found = results[0].instances
    title = f"objects ({found.true} true: {found.truth_objects})" if one_truth else "objects"
    table = Table(title=title)
    columns = ("f1_50", "f1_75", "ap50", "ap75", "pq")
    counts = ("objects",) if one_truth else ("objects", "true")
    for col in ("prediction", *counts, *columns):
        table.add_column(col, justify="left" if col == "prediction" else "right", overflow="fold")
    for r in results:
        s, n = r.instances.scores, [str(r.instances.predicted)]
        n += [] if one_truth else [str(r.instances.true)]
        table.add_row(r.prediction, *n, *(f"{s[c]:.4f}" for c in columns))
    return table


def csv_text(results, per_slice: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in results:
        rows = [("all", r.total)] + (list(r.per_slice) if per_slice else [])
        for z, c in rows:
            s = c.scores()
            writer.writerow(
                [r.prediction, r.truth, z, r.threshold, *(s[k] for k in SCORES),
                 c.tp, c.fp, c.fn, c.tn]
            )  # fmt: skip
    return buf.getvalue()
