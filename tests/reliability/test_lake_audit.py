"""The campaign's count (tests/reliability/lake.py) can fail: a missing row, a row at two
keys, a stale row and a claim on a missing object are each caught."""

from __future__ import annotations

import json
from pathlib import Path

from shared.storage import open_storage
from shared.storage.layout import sync_state_key
from tests.reliability.lake import audit, tagged_rows


def test_the_audit_counts_inputs_by_their_rows(tmp_path: Path) -> None:
    dest = open_storage(str(tmp_path))
    dest.write("a.csv", b"file,row\na,0\na,1\n")
    dest.write("b.csv", b"file,row\nb,0\n")  # b's row 1 is missing: lost
    dest.write("c.csv", b"file,row\nc,0\n")
    dest.write("old/c.csv", b"file,row\nc,0\n")  # c twice: duplicated
    dest.write("gone.csv", b"file,row\ngone,0\n")  # no input has it: stale
    dest.write("_runs/x.json", b"{}")  # bookkeeping is not read as data
    state = {"inputs": {"1:b.csv": {"output_keys": ["b.csv", "b2.csv"], "error": None}}}
    dest.write(sync_state_key("rel"), json.dumps(state).encode())
    expected = {name: tagged_rows(name, 2 if name != "c" else 1) for name in "abc"}

    lake = audit(dest, expected)

    assert (lake.correct, lake.lost, lake.duplicated) == (1, ["b"], ["c"])
    assert lake.unexpected_rows == 1 and lake.missing_claims == ["b2.csv"]
    assert not lake.ok
    dest.delete("gone.csv")
    dest.delete("old/c.csv")
    dest.write("b.csv", b"file,row\nb,0\nb,1\n")
    dest.write(sync_state_key("rel"), json.dumps({"inputs": {}}).encode())
    assert audit(dest, expected).ok


def test_a_partial_object_is_unreadable(tmp_path: Path) -> None:
    dest = open_storage(str(tmp_path))
    dest.write("a.parquet", b"PAR1 not really")
    assert audit(dest, {}).unreadable == ["a.parquet"]
