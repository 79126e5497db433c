"""Unit tests of the path glob matcher and FileFilter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.drive.filters import FileFilter, drive_timestamp, glob_match

CSV = "text/csv"


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("a.csv", "*.csv", True),
        ("dir/a.csv", "*.csv", False),  # * never crosses a folder
        ("dir/a.csv", "**/*.csv", True),
        ("a.csv", "**/*.csv", True),  # **/ also matches zero folders
        ("x/y/z/a.csv", "**/*.csv", True),
        ("x/y/a.csv", "x/**", True),
        ("x", "x/**", False),
        ("x/y/a.csv", "x/**/a.csv", True),
        ("x/a.csv", "x/**/a.csv", True),
        ("y/x/a.csv", "x/**/a.csv", False),
        ("a.csv", "?.csv", True),
        ("ab.csv", "?.csv", False),
        ("b1.csv", "b[0-9].csv", True),
        ("bx.csv", "b[!0-9].csv", True),
        ("b1.csv", "b[!0-9].csv", False),
        ("a+b (1).csv", "a+b (1).csv", True),  # regex metacharacters are literal
        ("data.csv.bak", "*.csv", False),  # the whole path must match
        ("sales/2024.csv", "/sales/*.csv", True),  # a leading / is ignored
        ("a[1.csv", "a[1.csv", True),  # an unclosed [ is literal
    ],
)
def test_glob_match(path: str, pattern: str, expected: bool) -> None:
    assert glob_match(path, pattern) is expected


def test_include_and_exclude_combine() -> None:
    filt = FileFilter.build(include=["**/*.csv", "**/*.xlsx"], exclude=["archive/**"])
    assert filt.accepts("sales/q1.csv", CSV, "")
    assert filt.accepts("q1.xlsx", CSV, "")
    assert not filt.accepts("archive/old.csv", CSV, "")
    assert not filt.accepts("notes.txt", "text/plain", "")


def test_mime_filter_takes_full_types_and_format_names() -> None:
    filt = FileFilter.build(mime_types=["csv", "parquet", "application/json"])
    assert filt.accepts("a.csv", CSV, "")
    assert filt.accepts("b.parquet", "application/octet-stream", "")  # Drive has no parquet type
    assert filt.accepts("c", "application/json", "")
    assert not filt.accepts("d.xlsx", "application/vnd.ms-excel", "")
    sheets = FileFilter.build(mime_types=["gsheet"])
    assert sheets.accepts("Budget", "application/vnd.google-apps.spreadsheet", "")
    assert not sheets.accepts("a.csv", CSV, "")


def test_unknown_format_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown MIME type or format 'excel'"):
        FileFilter.build(mime_types=["excel"])
    with pytest.raises(TypeError, match="list of strings"):
        FileFilter.build(include="*.csv")


def test_modified_since_is_strict_and_naive_means_utc() -> None:
    filt = FileFilter.build(modified_since=datetime(2024, 5, 1, 12, 0, 0))
    assert filt.accepts("a.csv", CSV, "2024-05-01T12:00:00.001Z")
    assert not filt.accepts("a.csv", CSV, "2024-05-01T12:00:00.000Z")
    assert not filt.accepts("a.csv", CSV, "2023-01-01T00:00:00Z")


def test_drive_timestamp_is_utc_rfc3339() -> None:
    assert drive_timestamp(datetime(2024, 1, 2, 3, 4, 5, 678000)) == "2024-01-02T03:04:05.678Z"
    aware = datetime(2024, 1, 2, 5, 0, tzinfo=UTC).astimezone()  # same instant, local zone
    assert drive_timestamp(aware) == "2024-01-02T05:00:00.000Z"
