"""The shared contract suite: every backend (local dir, moto_server S3, GCS emulator) must pass.

Like rclone's fstests: the same tests, parametrized over ``storage_url`` (tests/conftest.py),
against real servers on 127.0.0.1 driven by the real SDK clients.
"""

from __future__ import annotations

import io
import random
import tempfile
import threading
from datetime import datetime
from pathlib import Path

import pytest

from devstack.servers import GcsEmulator, MotoServer, free_port
from shared.errors import StorageError, StorageNotFound
from shared.storage import ObjectInfo, Storage, open_storage
from tests.storage.helpers import LARGE_SIZE, open_small_threshold

HOSTILE_KEYS = [
    "../escape.csv",
    "a/../../escape.csv",
    "/etc/passwd",
    "a\\b.csv",
    "..\\..\\escape.csv",
    "a/./b.csv",
    "a//b.csv",
    "a/b/",
    "nul\x00byte.csv",
    "line\nbreak.csv",
    "",
    ".",
    "..",
]


def _keys(store: Storage, prefix: str = "") -> list[str]:
    return [info.key for info in store.list(prefix)]


def test_backend_satisfies_the_protocol(store: Storage) -> None:
    assert isinstance(store, Storage)
    assert store.base_url


def test_write_then_read_roundtrips_bytes(store: Storage) -> None:
    payload = b"id,name\n1,alpha\n2,beta\n"
    info = store.write("out/table.csv", payload)
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size) == ("out/table.csv", len(payload))
    assert store.read("out/table.csv") == payload


def test_write_from_stream_starts_at_its_current_position(store: Storage) -> None:
    stream = io.BytesIO(b"HEADERpayload-from-a-stream")
    stream.seek(len("HEADER"))
    info = store.write("streamed.bin", stream)
    assert info.size == len(b"payload-from-a-stream")
    assert store.read("streamed.bin") == b"payload-from-a-stream"


def test_write_from_spooled_temp_file(store: Storage) -> None:
    payload = random.Random(7).randbytes(300_000)
    with tempfile.SpooledTemporaryFile(max_size=1024) as spool:
        spool.write(payload)
        spool.seek(0)
        store.write("spooled.bin", spool)  # type: ignore[arg-type]
    assert store.read("spooled.bin") == payload


def test_open_read_streams_in_chunks(store: Storage) -> None:
    payload = random.Random(1).randbytes(200_000)
    store.write("chunks.bin", payload)
    pieces = []
    with store.open_read("chunks.bin") as stream:
        while piece := stream.read(64 * 1024):
            pieces.append(piece)
    assert len(pieces) > 1
    assert b"".join(pieces) == payload


def test_overwrite_replaces_content_and_size(store: Storage) -> None:
    store.write("state.json", b'{"version": 1, "long": "xxxxxxxxxxxx"}')
    info = store.write("state.json", b'{"version": 2}')
    assert store.read("state.json") == b'{"version": 2}'
    assert info.size == len(b'{"version": 2}')
    assert _keys(store) == ["state.json"]


def test_stat_and_exists(store: Storage) -> None:
    assert store.stat("missing.csv") is None
    assert store.exists("missing.csv") is False
    written = store.write("dir/present.csv", b"a,b\n")
    info = store.stat("dir/present.csv")
    assert info is not None
    assert (info.key, info.size) == ("dir/present.csv", 4)
    assert info.etag
    assert info.etag == written.etag
    assert isinstance(info.updated, datetime) and info.updated.tzinfo is not None
    assert store.exists("dir/present.csv") is True
    assert store.exists("dir") is False, "a 'directory' is not an object"


def test_etag_changes_when_content_changes(store: Storage) -> None:
    first = store.write("e.txt", b"one")
    second = store.write("e.txt", b"two, longer")
    assert first.etag != second.etag


def test_list_is_recursive_sorted_and_relative(store: Storage) -> None:
    keys = ["b.csv", "a/2.csv", "a/1.csv", "a-b/x.csv", "a/sub/3.csv", "z/deep/er/4.csv"]
    for index, key in enumerate(keys):
        store.write(key, b"x" * (index + 1))
    listed = list(store.list())
    assert [info.key for info in listed] == sorted(keys)
    sizes = {info.key: info.size for info in listed}
    assert sizes == {key: index + 1 for index, key in enumerate(keys)}


def test_list_with_prefix(store: Storage) -> None:
    for key in ["a/1.csv", "a/sub/2.csv", "a-b/3.csv", "ab.csv", "b/4.csv"]:
        store.write(key, b"1")
    assert _keys(store, "a/") == ["a/1.csv", "a/sub/2.csv"]
    assert _keys(store, "a/sub") == ["a/sub/2.csv"]
    assert _keys(store, "a") == ["a-b/3.csv", "a/1.csv", "a/sub/2.csv", "ab.csv"]
    assert _keys(store, "nothing/") == []


def test_list_starts_after_a_key_and_stops_at_the_limit(store: Storage) -> None:
    keys = ["runs/a.json", "runs/b.json", "runs/b/x.json", "runs/c.json", "runs/d.json", "z.csv"]
    for key in keys:
        store.write(key, b"1")
    assert _keys(store, "runs/") == keys[:-1]
    # start_after is exclusive, whether or not the key exists
    assert [i.key for i in store.list("runs/", start_after="runs/b.json")] == keys[2:5]
    assert [i.key for i in store.list("runs/", start_after="runs/bb")] == keys[3:5]
    assert [i.key for i in store.list("runs/", start_after="runs/b.json", limit=2)] == keys[2:4]
    assert [i.key for i in store.list("runs/", limit=1)] == ["runs/a.json"]
    assert [i.key for i in store.list(start_after="runs/d.json")] == ["z.csv"]
    assert list(store.list("runs/", start_after="runs/zzz")) == []
    assert [i.key for i in store.list("runs/", start_after="", limit=3)] == keys[:3]


def test_list_pages_past_one_thousand_keys_after_a_start(store: Storage) -> None:
    """Past a page of S3's / GCS's 1,000 keys: no key is skipped or repeated at the seam."""
    keys = [f"p/{n:05d}" for n in range(1205)]
    _write_many(store, keys)
    assert _keys(store, "p/") == keys
    assert [i.key for i in store.list("p/", start_after="p/00003")] == keys[4:]
    assert [i.key for i in store.list("p/", start_after=keys[990], limit=20)] == keys[991:1011]


def _write_many(store: Storage, keys: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: store.write(key, b"."), keys))


@pytest.mark.parametrize("bad", [0, -1, True, "5"])
def test_list_rejects_a_limit_that_is_not_positive(store: Storage, bad: object) -> None:
    with pytest.raises(StorageError, match="limit"):
        list(store.list("", limit=bad))  # type: ignore[arg-type]


def test_list_empty_root(store: Storage) -> None:
    assert _keys(store) == []


def test_root_prefix_isolates_siblings(storage_url: str) -> None:
    left = open_small_threshold(storage_url.rstrip("/") + "/left")
    right = open_small_threshold(storage_url.rstrip("/") + "/left-sibling")
    left.write("k.csv", b"L")
    right.write("k.csv", b"R")
    assert _keys(left) == ["k.csv"]
    assert left.read("k.csv") == b"L"
    assert right.read("k.csv") == b"R"


def test_delete_removes_and_tolerates_absent(store: Storage) -> None:
    store.write("a/x.csv", b"1")
    store.write("a/y.csv", b"2")
    store.delete("a/x.csv")
    assert not store.exists("a/x.csv")
    assert _keys(store) == ["a/y.csv"]
    store.delete("a/x.csv")
    store.delete("never/was.csv")
    store.delete("a/y.csv")
    assert _keys(store) == []


@pytest.mark.parametrize(
    "key",
    ["données/été 2024/ü ñ 文件.csv", "with space/and+plus (1).csv", "emoji/📈 report.parquet"],
)
def test_unicode_and_space_keys(store: Storage, key: str) -> None:
    store.write(key, b"payload")
    assert store.read(key) == b"payload"
    assert _keys(store) == [key]
    assert store.stat(key) is not None


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_rejected_and_nothing_is_written(store: Storage, key: str) -> None:
    with pytest.raises(StorageError):
        store.write(key, b"evil")
    with pytest.raises(StorageError):
        store.create_if_absent(key, b"evil")
    with pytest.raises(StorageError):
        store.read(key)
    with pytest.raises(StorageError):
        store.stat(key)
    with pytest.raises(StorageError):
        store.delete(key)
    with pytest.raises(StorageError):
        store.url(key)
    assert _keys(store) == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a/../b", "a\\b"])
def test_hostile_list_prefix_rejected(store: Storage, prefix: str) -> None:
    with pytest.raises(StorageError):
        list(store.list(prefix))


def test_missing_object_raises_not_found(store: Storage) -> None:
    with pytest.raises(StorageNotFound, match=r"missing/file\.csv"):
        store.read("missing/file.csv")
    with pytest.raises(StorageNotFound):
        store.open_read("missing/file.csv")


def test_create_if_absent_second_call_loses(store: Storage) -> None:
    assert store.create_if_absent("locks/run.lock", b"first") is True
    assert store.create_if_absent("locks/run.lock", b"second") is False
    assert store.read("locks/run.lock") == b"first"
    assert _keys(store) == ["locks/run.lock"]


def test_create_if_absent_under_concurrency_has_one_winner(store: Storage) -> None:
    contenders = 6
    results: dict[int, bool] = {}
    barrier = threading.Barrier(contenders)

    def contend(index: int) -> None:
        barrier.wait()
        results[index] = store.create_if_absent("markers/once", f"writer-{index}".encode())

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [index for index, won in results.items() if won]
    assert len(results) == contenders
    assert len(winners) == 1
    assert store.read("markers/once") == f"writer-{winners[0]}".encode()


def test_url_names_the_full_location_and_reopens(store: Storage, backend: str) -> None:
    store.write("sub dir/file.csv", b"1,2\n")
    url = store.url("sub dir/file.csv")
    if backend == "local":
        assert url.startswith("file:///") and url.endswith("/store/sub%20dir/file.csv")
    else:
        assert url == f"{store.base_url}/sub dir/file.csv"
        assert store.base_url.endswith("/root")
    assert open_storage(store.base_url).read("sub dir/file.csv") == b"1,2\n"


def test_large_write_above_threshold_is_byte_identical(store: Storage, backend: str) -> None:
    payload = random.Random(42).randbytes(LARGE_SIZE)
    with tempfile.TemporaryFile() as spool:
        spool.write(payload)
        spool.seek(0)
        info = store.write("big/blob.bin", spool)  # type: ignore[arg-type]
    assert info.size == LARGE_SIZE
    assert store.read("big/blob.bin") == payload
    if backend == "s3":
        # A multipart upload's ETag is "<md5-of-part-md5s>-<part count>": 12 MiB / 5 MiB parts.
        assert info.etag is not None and info.etag.endswith("-3")


def test_content_type_is_guessed_or_explicit(
    store: Storage, backend: str, request: pytest.FixtureRequest
) -> None:
    store.write("t/out.parquet", b"PAR1")
    store.write("t/out.csv", b"a\n", content_type="text/plain")
    if backend == "local":
        pytest.skip("plain files keep no Content-Type")
    bucket, root = store.base_url.split("://", 1)[1].split("/", 1)
    if backend == "s3":
        client = request.getfixturevalue("moto_server").client()
        head = client.head_object(Bucket=bucket, Key=f"{root}/t/out.parquet")
        assert head["ContentType"] == "application/vnd.apache.parquet"
        head = client.head_object(Bucket=bucket, Key=f"{root}/t/out.csv")
        assert head["ContentType"] == "text/plain"
    else:
        gcs = request.getfixturevalue("gcs_emulator").client().bucket(bucket)
        assert gcs.get_blob(f"{root}/t/out.parquet").content_type == (
            "application/vnd.apache.parquet"
        )
        assert gcs.get_blob(f"{root}/t/out.csv").content_type == "text/plain"


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_missing_bucket_gives_clear_error(scheme: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("s3_env" if scheme == "s3" else "gcs_env")
    store = open_storage(f"{scheme}://no-such-bucket-4f1c/root")
    operations = {
        "read": lambda: store.read("a.csv"),
        "open_read": lambda: store.open_read("a.csv"),
        "stat": lambda: store.stat("a.csv"),
        "write": lambda: store.write("a.csv", b"1"),
        "list": lambda: list(store.list()),
        "delete": lambda: store.delete("a.csv"),
    }
    for name, operation in operations.items():
        with pytest.raises(StorageError, match="no-such-bucket-4f1c") as caught:
            operation()
        assert not isinstance(caught.value, StorageNotFound), name
        assert "does not exist" in str(caught.value), name


def test_servers_are_real_subprocesses_on_loopback(
    moto_server: MotoServer, gcs_emulator: GcsEmulator
) -> None:
    for server in (moto_server, gcs_emulator):
        assert server.running
        assert server.url.startswith("http://127.0.0.1:")


def test_unreachable_s3_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-in-messages")
    store = open_storage("s3://some-bucket/root")
    with pytest.raises(StorageError, match=r"s3://some-bucket/root/a\.csv") as caught:
        store.read("a.csv")
    assert "not-in-messages" not in str(caught.value)


def test_missing_s3_credentials_name_the_variables(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = open_storage(f"s3://{s3_bucket}/root")
    with pytest.raises(StorageError, match=rf"s3://{s3_bucket}/root/a\.csv") as caught:
        store.read("a.csv")
    assert "AWS_ACCESS_KEY_ID" in str(caught.value) and "AWS_PROFILE" in str(caught.value)
