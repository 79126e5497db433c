"""What a GCS JSON API call needs, and what a predefined role grants: the permission proxy's tables.

:func:`required` maps one request (method, path, query) to the IAM permissions GCS checks for
it, per bucket; :data:`ROLES` lists the ``storage.*`` permissions of the predefined roles as
Google's "Cloud Storage roles and permissions" table gives them
(cloud.google.com/iam/docs/roles-permissions/storage; permissions outside ``storage.*``, such
as ``resourcemanager.projects.get``, are left out: no Cloud Storage call checks them). The
permissions of each call follow "IAM permissions for Cloud Storage" and "IAM permissions for
JSON methods" (cloud.google.com/storage/docs/access-control/iam-json): for instance
``storage.objects.create`` to upload, plus ``storage.objects.delete`` when the upload
replaces an existing object, and ``storage.buckets.get`` to read a bucket's metadata.

A call this table does not know is refused (deny by default), so a new kind of call the code
starts to make fails a test instead of passing unchecked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

_OBJECT_ADMIN = frozenset(
    {
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.getIamPolicy",
        "storage.objects.list",
        "storage.objects.overrideUnlockedRetention",
        "storage.objects.restore",
        "storage.objects.setIamPolicy",
        "storage.objects.setRetention",
        "storage.objects.update",
        "storage.folders.create",
        "storage.folders.delete",
        "storage.folders.get",
        "storage.folders.list",
        "storage.folders.rename",
        "storage.managedFolders.create",
        "storage.managedFolders.delete",
        "storage.managedFolders.get",
        "storage.managedFolders.getIamPolicy",
        "storage.managedFolders.list",
        "storage.managedFolders.setIamPolicy",
        "storage.multipartUploads.abort",
        "storage.multipartUploads.create",
        "storage.multipartUploads.list",
        "storage.multipartUploads.listParts",
    }
)

# Role -> its storage.* permissions (Google's roles table; see the module docstring).
ROLES: dict[str, frozenset[str]] = {
    "roles/storage.objectViewer": frozenset(
        {
            "storage.objects.get",
            "storage.objects.list",
            "storage.folders.get",
            "storage.folders.list",
            "storage.managedFolders.get",
            "storage.managedFolders.list",
        }
    ),
    "roles/storage.objectCreator": frozenset(
        {
            "storage.objects.create",
            "storage.folders.create",
            "storage.managedFolders.create",
            "storage.multipartUploads.abort",
            "storage.multipartUploads.create",
            "storage.multipartUploads.listParts",
        }
    ),
    "roles/storage.objectUser": _OBJECT_ADMIN
    - {
        "storage.objects.getIamPolicy",
        "storage.objects.setIamPolicy",
        "storage.objects.overrideUnlockedRetention",
        "storage.objects.setRetention",
        "storage.managedFolders.getIamPolicy",
        "storage.managedFolders.setIamPolicy",
    },
    "roles/storage.objectAdmin": _OBJECT_ADMIN,
    "roles/storage.bucketViewer": frozenset({"storage.buckets.get", "storage.buckets.list"}),
    "roles/storage.legacyBucketReader": frozenset(
        {
            "storage.buckets.get",
            "storage.objects.list",
            "storage.managedFolders.get",
            "storage.managedFolders.list",
            "storage.multipartUploads.list",
        }
    ),
    "roles/storage.legacyBucketWriter": frozenset(
        {
            "storage.buckets.get",
            "storage.objects.create",
            "storage.objects.delete",
            "storage.objects.list",
            "storage.objects.restore",
            "storage.managedFolders.create",
            "storage.managedFolders.delete",
            "storage.managedFolders.get",
            "storage.managedFolders.list",
            "storage.multipartUploads.abort",
            "storage.multipartUploads.create",
            "storage.multipartUploads.list",
            "storage.multipartUploads.listParts",
        }
    ),
    "roles/storage.legacyObjectReader": frozenset({"storage.objects.get"}),
}


@dataclass(frozen=True)
class Need:
    """One permission a request needs on one bucket."""

    permission: str
    bucket: str


@dataclass(frozen=True)
class Call:
    """A classified JSON API request: what it is, and the object it writes (if any)."""

    action: str
    needs: tuple[Need, ...]
    writes: tuple[str, str] | None = None  # (bucket, object): an upload that may replace one


class UnknownCall(ValueError):
    """A request the table has no IAM mapping for (refused by the proxy)."""


def permissions(roles: Iterable[str]) -> frozenset[str]:
    """The union of the roles' ``storage.*`` permissions; an unknown role raises KeyError."""
    granted: set[str] = set()
    for role in roles:
        if role not in ROLES:
            raise KeyError(f"{role} is not in the permission proxy's roles table")
        granted |= ROLES[role]
    return frozenset(granted)


def _parts(path: str) -> list[str]:
    return [unquote(p) for p in path.split("/") if p]


def classify(method: str, path: str, query: Mapping[str, list[str]]) -> Call:
    """The permissions ``method path?query`` needs (JSON API, upload and download paths)."""
    parts = _parts(path)
    method = method.upper()
    if parts[:3] == ["upload", "storage", "v1"]:
        parts = parts[3:]
        if len(parts) == 3 and parts[0] == "b" and parts[2] == "o" and method in ("POST", "PUT"):
            if "upload_id" in query:
                # a resumable session already authorized when it was created
                return Call("objects.upload (session)", ())
            bucket = parts[1]
            name = (query.get("name") or [""])[0]
            need = (Need("storage.objects.create", bucket),)
            return Call("objects.insert", need, writes=(bucket, name) if name else None)
        raise UnknownCall(f"{method} {path}")
    if parts[:3] == ["download", "storage", "v1"]:
        parts = parts[3:]
    elif parts[:2] == ["storage", "v1"]:
        parts = parts[2:]
    else:
        raise UnknownCall(f"{method} {path}")
    return _json_call(method, parts, path)


def _json_call(method: str, parts: list[str], path: str) -> Call:
    if parts == ["b"]:
        table = {"GET": "storage.buckets.list", "POST": "storage.buckets.create"}
        if method in table:
            return Call(f"buckets.{method.lower()}", (Need(table[method], "*"),))
        raise UnknownCall(f"{method} {path}")
    if len(parts) < 2 or parts[0] != "b":
        raise UnknownCall(f"{method} {path}")
    bucket, rest = parts[1], parts[2:]
    bucket_calls = {
        "GET": "storage.buckets.get",
        "PATCH": "storage.buckets.update",
        "PUT": "storage.buckets.update",
        "DELETE": "storage.buckets.delete",
    }
    if not rest and method in bucket_calls:
        return Call(f"buckets.{method.lower()}", (Need(bucket_calls[method], bucket),))
    if rest == ["iam"] and method in ("GET", "PUT"):
        perm = "storage.buckets.getIamPolicy" if method == "GET" else "storage.buckets.setIamPolicy"
        return Call("buckets.iam", (Need(perm, bucket),))
    if rest == ["o"] and method == "GET":
        return Call("objects.list", (Need("storage.objects.list", bucket),))
    if rest == ["o"] and method == "POST":
        return Call("objects.insert", (Need("storage.objects.create", bucket),))
    # o/NAME/rewriteTo/b/DEST/o/DEST_NAME (names %2F-encoded)
    if len(rest) == 7 and rest[0] == "o" and rest[2] in ("copyTo", "rewriteTo"):
        dest_bucket, dest_name = rest[4], rest[6]
        needs = (Need("storage.objects.get", bucket), Need("storage.objects.create", dest_bucket))
        return Call(f"objects.{rest[2]}", needs, writes=(dest_bucket, dest_name))
    if len(rest) >= 3 and rest[0] == "o" and rest[-1] == "compose" and method == "POST":
        needs = (Need("storage.objects.get", bucket), Need("storage.objects.create", bucket))
        return Call("objects.compose", needs, writes=(bucket, "/".join(rest[1:-1])))
    if len(rest) >= 2 and rest[0] == "o":
        # the name is one %2F-encoded segment on GCS; an emulator's mediaLink leaves '/' as is
        object_calls = {
            "GET": "storage.objects.get",
            "HEAD": "storage.objects.get",
            "PATCH": "storage.objects.update",
            "PUT": "storage.objects.update",
            "DELETE": "storage.objects.delete",
        }
        if method in object_calls:
            return Call(f"objects.{method.lower()}", (Need(object_calls[method], bucket),))
    raise UnknownCall(f"{method} {path}")


def denied_message(principal: str, need: Need) -> str:
    """GCS's wording for a refused permission (the 403 ``message``)."""
    resource = "bucket" if need.permission.startswith("storage.buckets.") else "object"
    return (
        f"{principal} does not have {need.permission} access to the Google Cloud Storage "
        f"{resource}. Permission '{need.permission}' denied on resource (or it may not exist)."
    )
