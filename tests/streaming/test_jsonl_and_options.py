"""JSON Lines streaming, and the ``streaming`` section of the pipeline config."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from shared.config import parse_config
from shared.errors import ConfigError, ReadError
from shared.transform.streaming.options import StreamingOptions
from tests.streaming.conftest import both_ways, make_pipeline, run_render


def jsonl(records: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def records(n: int = 300) -> list[dict[str, object]]:
    return [
        {"id": i, "city": ["Oslo", "Köln", None][i % 3], "amount": i * 1.5, "tags": None}
        for i in range(n)
    ]


def test_jsonl_streams_to_the_in_memory_result() -> None:
    steps = [
        {"op": "filter", "expr": "amount > 30"},
        {"op": "derive", "column": "double", "expr": "amount * 2"},
        {"op": "fillna", "values": {"city": "?"}},
    ]
    streamed, in_memory = both_ways(steps, jsonl(records()), "jsonl")
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert len(streamed.frame()) == 279


def test_jsonl_fields_that_appear_or_widen_late_match_the_whole_file() -> None:
    rows = records()
    rows[280]["tags"] = "late"  # null in the first blocks, text later
    rows[290]["extra"] = 7  # a new field near the end
    rows[295]["id"] = 295.5  # int, then a float
    streamed, in_memory = both_ways([], jsonl(rows), "jsonl")
    frame = streamed.frame()
    pd.testing.assert_frame_equal(frame, in_memory.frame())
    assert list(frame.columns)[-1] == "extra"
    assert frame["tags"].iloc[280] == "late"


def test_a_bad_json_line_late_in_the_file_names_its_line() -> None:
    data = jsonl(records()) + b'{"id": 1, "city": \n'
    with pytest.raises(ReadError, match="line 301 is not valid JSON"):
        run_render(make_pipeline([], stream=True), data, "jsonl", "in.jsonl")


def test_json_with_lines_true_streams_and_plain_json_never_does() -> None:
    data = jsonl(records(50))
    read = {"json": {"lines": True}}
    streamed = run_render(make_pipeline([], stream=True, read=read), data, "json", "in.json")
    assert len(streamed.frame()) == 50
    array = json.dumps(records(50)).encode()
    plain = run_render(make_pipeline([], stream=True), array, "json", "in.json")
    assert len(plain.frame()) == 50  # a JSON array is read whole, whatever its size


def test_streaming_defaults_and_validation() -> None:
    body = {"output": {"url": "/x"}}
    pipeline = parse_config({"pipelines": {"p": body}}).pipelines["p"]
    assert pipeline.streaming == StreamingOptions()
    assert pipeline.streaming.threshold_bytes == 256_000_000
    with pytest.raises(ConfigError, match=r"pipelines\.p\.streaming\.batch_rows"):
        parse_config({"pipelines": {"p": {**body, "streaming": {"batch_rows": 0}}}})
    with pytest.raises(ConfigError, match=r"pipelines\.p\.streaming\.threshold: unknown field"):
        parse_config({"pipelines": {"p": {**body, "streaming": {"threshold": 5}}}})


def test_options_module_stays_free_of_pandas() -> None:
    import subprocess
    import sys

    code = (
        "import sys, shared.config, shared.transform.streaming; "
        "assert 'pandas' not in sys.modules and 'pyarrow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
