"""devstack.gcs_roles: JSON API calls to permissions, roles to permissions (no server)."""

from __future__ import annotations

import pytest

from devstack.gcs_permission_proxy import error_body, upload_name
from devstack.gcs_roles import ROLES, Need, UnknownCall, classify, permissions


@pytest.mark.parametrize(
    ("method", "path", "query", "needs"),
    [
        ("GET", "/storage/v1/b/bk", {}, {("storage.buckets.get", "bk")}),
        ("GET", "/storage/v1/b/bk/o", {"maxResults": ["1"]}, {("storage.objects.list", "bk")}),
        ("GET", "/storage/v1/b/bk/o/a%2Fb.csv", {}, {("storage.objects.get", "bk")}),
        ("GET", "/download/storage/v1/b/bk/o/a/b.csv", {}, {("storage.objects.get", "bk")}),
        ("DELETE", "/storage/v1/b/bk/o/x", {}, {("storage.objects.delete", "bk")}),
        ("PATCH", "/storage/v1/b/bk/o/x", {}, {("storage.objects.update", "bk")}),
        ("POST", "/upload/storage/v1/b/bk/o", {"uploadType": ["multipart"]},
         {("storage.objects.create", "bk")}),
        ("PUT", "/upload/storage/v1/b/bk/o", {"upload_id": ["s"]}, set()),
        ("POST", "/storage/v1/b/src/o/a/rewriteTo/b/dst/o/b", {},
         {("storage.objects.get", "src"), ("storage.objects.create", "dst")}),
    ],
)  # fmt: skip
def test_calls_map_to_the_permissions_gcs_checks(method, path, query, needs):
    call = classify(method, path, query)
    assert {(n.permission, n.bucket) for n in call.needs} == needs


def test_unknown_calls_are_refused_not_waved_through():
    for method, path in [("GET", "/batch/storage/v1"), ("POST", "/storage/v1/b/bk/acl")]:
        with pytest.raises(UnknownCall):
            classify(method, path, {})


def test_the_runtime_roles_lack_buckets_get_as_googles_table_says():
    assert "storage.buckets.get" not in ROLES["roles/storage.objectViewer"]
    assert "storage.buckets.get" not in ROLES["roles/storage.objectAdmin"]
    assert "storage.buckets.get" in ROLES["roles/storage.legacyBucketReader"]
    assert ROLES["roles/storage.objectViewer"] < ROLES["roles/storage.objectAdmin"]
    assert {"storage.objects.create", "storage.objects.delete"} <= permissions(
        ["roles/storage.objectAdmin"]
    )
    with pytest.raises(KeyError):
        permissions(["roles/storage.everything"])


def test_the_uploaded_name_is_read_from_query_json_or_multipart_metadata():
    assert upload_name({"name": ["q.csv"]}, "", b"") == "q.csv"
    assert upload_name({}, "application/json", b'{"name": "j.csv"}') == "j.csv"
    multipart = (
        b"--==0==\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n"
        b'{"name": "m.csv", "contentType": "text/csv"}\r\n--==0==\r\n'
        b"content-type: text/csv\r\n\r\na,b\r\n--==0==--"
    )
    assert upload_name({}, "multipart/related; boundary==0==", multipart) == "m.csv"


def test_refusals_have_gcs_error_shape():
    import json

    body = json.loads(error_body(403, "no", "forbidden"))
    assert body == {
        "error": {
            "code": 403,
            "message": "no",
            "errors": [{"message": "no", "domain": "global", "reason": "forbidden"}],
        }
    }
    assert Need("storage.objects.get", "b").bucket == "b"
