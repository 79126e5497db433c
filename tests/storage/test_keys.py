"""Unit tests for key safety, content types and ``open_storage`` URL parsing (no servers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import StorageError
from shared.storage import guess_content_type, open_storage, safe_key
from shared.storage.base import MAX_KEY_BYTES, check_key, check_prefix, key_problem
from shared.storage.gcs import GcsStorage
from shared.storage.local import LocalStorage
from shared.storage.s3 import S3Storage

REPO_ROOT = Path(__file__).resolve().parents[2]

SAFE_KEY_CASES = [
    # (untrusted path, safe key)
    ("reports/2024/q1.csv", "reports/2024/q1.csv"),
    ("../../etc/passwd", "etc/passwd"),
    ("a/../../../b.csv", "a/b.csv"),
    ("/abs/path.csv", "abs/path.csv"),
    ("//double//slashes//x.csv", "double/slashes/x.csv"),
    ("C:\\Users\\me\\file.csv", "C:/Users/me/file.csv"),
    ("..\\..\\windows\\system32", "windows/system32"),
    ("a/./b/./c.csv", "a/b/c.csv"),
    ("trailing/slash/", "trailing/slash"),
    ("nul\x00byte.csv", "nul_byte.csv"),
    ("tab\there\nnewline\rcr.csv", "tab_here_newline_cr.csv"),
    ("del\x7fand\x85c1.csv", "del_and_c1.csv"),
    ("données/été 2024/ü ñ 文件.csv", "données/été 2024/ü ñ 文件.csv"),
    ("emoji 📈/report.parquet", "emoji 📈/report.parquet"),
    ("...", "..."),
    (".hidden/..file", ".hidden/..file"),
    ("a/ b /c", "a/ b /c"),
    ("./../.", None),
    ("", None),
    ("/", None),
    ("\\", None),
    ("../..", None),
]


@pytest.mark.parametrize(("raw", "expected"), SAFE_KEY_CASES)
def test_safe_key_table(raw: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(StorageError):
            safe_key(raw)
    else:
        assert safe_key(raw) == expected


@pytest.mark.parametrize("raw", [case for case, _ in SAFE_KEY_CASES])
def test_safe_key_output_can_never_escape_the_root(raw: str, tmp_path: Path) -> None:
    try:
        key = safe_key(raw)
    except StorageError:
        return
    assert safe_key(key) == key, "safe_key must be idempotent"
    parts = key.split("/")
    assert all(part not in ("", ".", "..") for part in parts)
    assert "\\" not in key and "\x00" not in key
    root = tmp_path.resolve()
    assert (root / key).resolve().is_relative_to(root)


def test_safe_key_length_limit_counts_utf8_bytes() -> None:
    assert safe_key("é" * (MAX_KEY_BYTES // 2)) == "é" * (MAX_KEY_BYTES // 2)
    with pytest.raises(StorageError, match="longer than"):
        safe_key("é" * (MAX_KEY_BYTES // 2 + 1))


def test_safe_key_rejects_lone_surrogates_and_non_strings() -> None:
    with pytest.raises(StorageError, match="unicode"):
        safe_key("bad\udcffname.csv")
    with pytest.raises(StorageError, match="must be a str"):
        safe_key(b"bytes.csv")  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["a/b.csv", "ü/x y.csv", "...", "a/.hidden"])
def test_check_key_accepts_safe_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["../a", "/a", "a//b", "a\\b", "a/./b", "a/", "a\x00", ""])
def test_check_key_rejects_anything_safe_key_would_change(key: str) -> None:
    with pytest.raises(StorageError, match="unsafe storage key"):
        check_key(key)


KEY_PROBES = [
    *(case for case, _ in SAFE_KEY_CASES),
    *(key for key, _ in SAFE_KEY_CASES if key is not None),
    "a//b",
    "a/",
    "bad\udcffname.csv",
    "k" * (MAX_KEY_BYTES + 1),
    "k" * MAX_KEY_BYTES,
]


@pytest.mark.parametrize("key", KEY_PROBES)
def test_key_problem_and_safe_key_are_one_rule_set(key: str) -> None:
    """A key has no problem exactly when safe_key leaves it as it is (and check_key takes it)."""
    try:
        unchanged = safe_key(key) == key
    except StorageError:
        unchanged = False
    assert (key_problem(key) is None) == unchanged, key_problem(key)
    if unchanged:
        assert check_key(key) == key
    else:
        with pytest.raises(StorageError, match="unsafe storage key"):
            check_key(key)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b/", "a/b-"])
def test_check_prefix_accepts(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "../", "a//", "a/../"])
def test_check_prefix_rejects(prefix: str) -> None:
    with pytest.raises(StorageError):
        check_prefix(prefix)


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("out/t.parquet", "application/vnd.apache.parquet"),
        ("out/T.PARQUET", "application/vnd.apache.parquet"),
        ("out/t.csv", "text/csv"),
        ("out/t.json", "application/json"),
        ("out/t.jsonl", "application/jsonl"),
        ("out/t.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("out/t.csv.gz", "application/gzip"),
        ("out/no_extension", "application/octet-stream"),
        ("out/.parquet", "application/octet-stream"),
    ],
)
def test_guess_content_type(key: str, content_type: str) -> None:
    assert guess_content_type(key) == content_type


def test_open_storage_s3_url() -> None:
    store = open_storage("s3://my-bucket/some/prefix/")
    assert isinstance(store, S3Storage)
    assert store.base_url == "s3://my-bucket/some/prefix"
    assert store.url("a b/c.csv") == "s3://my-bucket/some/prefix/a b/c.csv"
    assert open_storage("s3://my-bucket").url("k") == "s3://my-bucket/k"


def test_open_storage_gs_url() -> None:
    store = open_storage("gs://my-bucket/p")
    assert isinstance(store, GcsStorage)
    assert store.url("x.parquet") == "gs://my-bucket/p/x.parquet"


def test_open_storage_file_url_and_plain_path(tmp_path: Path) -> None:
    spaced = tmp_path / "with space"
    from_url = open_storage(spaced.as_uri())
    from_path = open_storage(str(spaced))
    assert isinstance(from_url, LocalStorage) and isinstance(from_path, LocalStorage)
    assert from_url.root == from_path.root == spaced
    from_url.write("k.txt", b"1")
    assert from_path.read("k.txt") == b"1"
    assert from_path.base_url == spaced.as_uri()


def test_open_storage_relative_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_storage("out")
    assert isinstance(store, LocalStorage)
    assert store.root == tmp_path / "out"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "unsupported storage URL scheme"),
        ("s3:///prefix", "no bucket"),
        ("gs://", "no bucket"),
        ("s3://bucket/../escape", "unsafe prefix"),
        ("gs://bucket/a//b", "unsafe prefix"),
        ("file://remotehost/x", "remote host"),
        ("", "non-empty"),
    ],
)
def test_open_storage_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_storage(url)


def test_importing_storage_does_not_import_cloud_sdks() -> None:
    code = (
        "import sys, shared.storage\n"
        "s = shared.storage.open_storage('s3://b/p'); g = shared.storage.open_storage('gs://b/p')\n"
        "heavy = [m for m in ('boto3', 'botocore', 'google.cloud.storage') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
