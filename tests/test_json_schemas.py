"""What emda writes as JSON matches the schemas it publishes (emda/schemas, docs/json.md)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from emda.cli import app
from emda.io.writer import write_volume

from .conftest import CROPS, REPO, adapt_on_crops

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a dev dependency")

SCHEMAS = REPO / "emda" / "schemas"
runner = CliRunner()


def schema(name: str) -> dict:
    document = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)  # a valid schema itself
    return document


def validate(data, name: str) -> None:
    jsonschema.Draft202012Validator(schema(name)).validate(data)


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_evaluate_json_matches_its_schema_with_every_section(tmp_path):
    prob = tmp_path / "p.tif"
    invoke("predict", "emda:vnc", str(CROPS / "vnc/raw.tif"), "-o", str(prob), "--quiet")
    empty = tmp_path / "empty.tif"  # precision undefined: no predicted pixels
    write_volume(empty, np.zeros((12, 320, 320), np.uint8))
    out = tmp_path / "scores.json"
    invoke("evaluate", str(prob), str(empty), "--labels", str(CROPS / "vnc/labels.tif"),
           "--per-slice", "--instances", "--json", str(out))  # fmt: skip
    data = json.loads(out.read_text())  # strict JSON: no NaN
    validate(data, "emda-evaluate-1")
    assert data[1]["precision"] is None and data[1]["recall"] == 0
    assert {e["schema"] for e in data} == {"emda-evaluate/1"}


def test_info_json_matches_its_schema_for_runs_and_volumes(tmp_path):
    run = tmp_path / "run"
    assert adapt_on_crops(run).exit_code == 0
    for target in (str(run), "emda:epfl", str(CROPS / "vnc/raw.tif")):
        data = json.loads(invoke("info", target, "--json"))
        validate(data, "emda-info-1")
    with pytest.raises(jsonschema.ValidationError):  # a volume is not a run
        validate({**data, "kind": "run"}, "emda-info-1")


def test_methods_json_matches_its_schema():
    data = json.loads(invoke("methods", "--json"))
    validate(data, "emda-methods-1")
    assert {"ft", "ynet", "selftrain"} <= {m["name"] for m in data["methods"]}


def test_every_schema_is_documented_and_named_as_emda_writes_it():
    docs = (REPO / "docs" / "json.md").read_text()
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        document = json.loads(path.read_text())
        base, version = path.name.removesuffix(".schema.json").rsplit("-", 1)
        assert document["$id"] == f"{base}/{version}", path
        assert f"../emda/schemas/{path.name}" in docs, f"docs/json.md does not link {path.name}"
        assert f"`{document['$id']}`" in docs, f"docs/json.md does not name {document['$id']}"
