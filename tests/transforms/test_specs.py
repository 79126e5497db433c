"""Step spec validation: errors at config-load time name the offending field."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel, ValidationError

from shared.transform.readers.options import CsvOptions, ReadOptions
from shared.transform.steps.specs import CastStep, GroupbyStep, Step, validate_steps


def error_locations(raw: list[dict]) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        validate_steps(raw)
    return [(tuple(error["loc"]), error["msg"]) for error in caught.value.errors()]


def test_bad_op_is_rejected_at_the_step() -> None:
    [(loc, msg)] = error_locations([{"op": "explode"}])
    assert loc == (0,)
    assert "'explode'" in msg and "'filter'" in msg


def test_missing_field_named() -> None:
    [(loc, msg)] = error_locations([{"op": "limit", "n": 1}, {"op": "select"}])
    assert loc == (1, "select", "columns")
    assert msg == "Field required"


def test_unknown_field_named() -> None:
    [(loc, msg)] = error_locations([{"op": "sort", "by": ["a"], "descending": True}])
    assert loc == (0, "sort", "descending")
    assert "Extra inputs" in msg


def test_bad_cast_type_named() -> None:
    [(loc, msg)] = error_locations([{"op": "cast", "columns": {"units": "integer"}}])
    assert loc == (0, "cast", "columns")
    assert "'units'" in msg and "'integer'" in msg
    [(loc, msg)] = error_locations([{"op": "cast", "columns": {"p": "decimal(5,7)"}}])
    assert "scale <= precision" in msg
    assert CastStep(op="cast", columns={"p": "decimal(38, 4)"}).columns == {"p": "decimal(38, 4)"}


@pytest.mark.parametrize("op", ["filter", "derive"])
def test_unparseable_expression_named(op: str) -> None:
    step = {"op": op, "expr": "units >"} | ({"column": "x"} if op == "derive" else {})
    [(loc, msg)] = error_locations([step])
    assert loc == (0, op, "expr")
    assert "'units >'" in msg


def test_other_load_time_checks() -> None:
    assert error_locations([{"op": "custom", "function": "no_dots"}])[0][0] == (
        0,
        "custom",
        "function",
    )
    assert error_locations([{"op": "limit", "n": -1}])[0][0] == (0, "limit", "n")
    [(loc, msg)] = error_locations([{"op": "replace", "pattern": "(unclosed"}])
    assert loc == (0, "replace", "pattern")
    [(loc, msg)] = error_locations([{"op": "replace", "column": "a"}])
    assert "exactly one of 'values' or 'pattern'" in msg
    [(loc, msg)] = error_locations([{"op": "sort", "by": ["a", "b"], "ascending": [True]}])
    assert "2 'by' columns" in msg
    [(loc, msg)] = error_locations([{"op": "groupby", "by": ["a"], "aggs": {"n": ["b", "total"]}}])
    assert loc[:3] == (0, "groupby", "aggs")
    [(loc, msg)] = error_locations([{"op": "groupby", "by": ["a"], "aggs": {"a": ["b", "sum"]}}])
    assert "clash" in msg


def test_groupby_accepts_both_agg_forms_and_steps_are_frozen() -> None:
    [step] = validate_steps(
        [
            {
                "op": "groupby",
                "by": ["r"],
                "aggs": {"t": ["u", "sum"], "m": {"column": "u", "agg": "max"}},
            }
        ]
    )
    assert isinstance(step, GroupbyStep)
    assert {out: (a.column, a.agg) for out, a in step.aggs.items()} == {
        "t": ("u", "sum"),
        "m": ("u", "max"),
    }
    with pytest.raises(ValidationError):
        step.by = ["x"]  # type: ignore[misc]


def test_steps_embed_in_a_config_model() -> None:
    class Pipeline(BaseModel):
        steps: list[Step]
        read: ReadOptions = ReadOptions()

    with pytest.raises(ValidationError) as caught:
        Pipeline.model_validate(
            {"steps": [{"op": "filter", "expr": "a > 1"}, {"op": "cast", "columns": {"a": "x"}}]}
        )
    assert caught.value.errors()[0]["loc"] == ("steps", 1, "cast", "columns")
    with pytest.raises(ValidationError) as caught:
        Pipeline.model_validate({"steps": [], "read": {"csv": {"delimiter": ";;"}}})
    assert caught.value.errors()[0]["loc"] == ("read", "csv", "delimiter")
    parsed = Pipeline.model_validate({"steps": [], "read": {"json": {"lines": True}}})
    assert parsed.read.json.lines is True
    assert CsvOptions(encoding="LATIN1").encoding == "iso8859-1"


def test_specs_and_options_do_not_import_pandas() -> None:
    code = (
        "import sys, shared.transform.steps.specs, shared.transform.readers.options; "
        "print('pandas' in sys.modules, 'pyarrow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False False"
