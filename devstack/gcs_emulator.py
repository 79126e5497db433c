"""gcp-storage-emulator that enforces GCS object preconditions: ``python -m devstack.gcs_emulator``.

Takes the same arguments as the ``gcp-storage-emulator`` console script, e.g.
``start --host 127.0.0.1 --port 9023 --in-memory``.

Why: upstream ignores ``ifGenerationMatch`` and its siblings, so an upload with
``ifGenerationMatch=0`` (``GcsStorage.create_if_absent``, which event claims, leases and the fan-out
finalizer election rely on) silently replaced an existing object, and GCS race safety could not be
shown locally. Real GCS answers such a request with 412 ``conditionNotMet``; so does this launcher.
Upstream also answers ``objects.list`` with every object at once, ignoring ``maxResults``,
``startOffset`` and ``pageToken``; this launcher pages it as GCS does (:func:`page_listing`),
and it skips upstream's O(N) metadata dump after each write when the store is in memory.

How: before the server starts, the handlers that create, replace, patch or delete an object are
wrapped. A wrapper compares the request's precondition query parameters with the live object's
``generation`` / ``metageneration`` (upstream keeps both per object and gives every write a new
generation) and answers 412 in GCS's JSON error format, or runs the upstream handler. Check and
write run under one lock, so they stay atomic even if the server handled requests on several
threads (upstream's ``HTTPServer`` is single-threaded today). No upstream code is copied: the
routing table ``server.HANDLERS`` holds references to the handlers, so those entries are swapped
along with the module attributes. Reads and the XML API (``x-goog-if-*`` headers) are unchanged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any

PRECONDITION_FAILED_MESSAGE = "At least one of the pre-conditions you specified did not hold."

# Query parameter -> Preconditions field. google-cloud-storage spells the last one
# ``ifMetaGenerationNotMatch`` on uploads, the JSON API ``ifMetagenerationNotMatch``.
_QUERY_PARAMETERS = {
    "ifGenerationMatch": "generation_match",
    "ifGenerationNotMatch": "generation_not_match",
    "ifMetagenerationMatch": "metageneration_match",
    "ifMetagenerationNotMatch": "metageneration_not_match",
    "ifMetaGenerationNotMatch": "metageneration_not_match",
}

_WRITE_LOCK = threading.RLock()  # re-entrant: a resumable POST with upload_id calls upload_partial
_INSTALLED_MARK = "_drivepipe_preconditions_installed"

Target = tuple[str, str]  # (bucket, object name)
TargetOf = Callable[[Any, Any], Target | None]  # (request, storage) -> the object written


@dataclass(frozen=True)
class Preconditions:
    """The ``if*Match`` query parameters of one request (None: not given)."""

    generation_match: int | None = None
    generation_not_match: int | None = None
    metageneration_match: int | None = None
    metageneration_not_match: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, Sequence[str]]) -> Preconditions:
        """Parse a parsed query string; ``ValueError`` names a parameter that is not an integer."""
        values: dict[str, int] = {}
        for parameter, field_name in _QUERY_PARAMETERS.items():
            if parameter not in query:
                continue
            raw = query[parameter][0]
            try:
                values[field_name] = int(raw)
            except ValueError:
                raise ValueError(f"{parameter} must be an integer, got {raw!r}") from None
        return cls(**values)

    @property
    def given(self) -> bool:
        """True if any precondition was given."""
        return any(getattr(self, field.name) is not None for field in fields(self))

    def violation(self, live: Mapping[str, Any] | None) -> str | None:
        """Why the preconditions fail against the live object (None: no live object), else None."""
        generation = int(live["generation"]) if live else 0
        metageneration = int(live["metageneration"]) if live else 0
        if self.generation_match is not None and generation != self.generation_match:
            return f"ifGenerationMatch={self.generation_match}, live generation is {generation}"
        if self.generation_not_match is not None and (
            live is None or generation == self.generation_not_match
        ):
            return (
                f"ifGenerationNotMatch={self.generation_not_match}, live generation is {generation}"
            )
        if self.metageneration_match is not None and (
            live is None or metageneration != self.metageneration_match
        ):
            return (
                f"ifMetagenerationMatch={self.metageneration_match}, "
                f"live metageneration is {metageneration}"
            )
        if self.metageneration_not_match is not None and (
            live is None or metageneration == self.metageneration_not_match
        ):
            return (
                f"ifMetagenerationNotMatch={self.metageneration_not_match}, "
                f"live metageneration is {metageneration}"
            )
        return None


def error_body(status: HTTPStatus, reason: str, message: str, detail: str) -> dict[str, Any]:
    """GCS's JSON API error document."""
    return {
        "error": {
            "code": status.value,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": detail}],
        }
    }


# -- which object a request writes --------------------------------------------------------------


def _resumable_target(request: Any, storage: Any) -> Target | None:
    from gcp_storage_emulator.exceptions import NotFound

    try:
        resource = storage.get_resumable_file_obj(request.query["upload_id"][0])
    except NotFound:
        return None  # unknown session: upstream answers 404
    return resource["bucket"], resource["name"]


def _upload_target(request: Any, storage: Any) -> Target | None:
    """``objects.insert``: name from ``?name=``, else the multipart/resumable metadata."""
    if "upload_id" in request.query:
        return _resumable_target(request, storage)
    bucket = request.params["bucket_name"]
    if "name" in request.query:
        return bucket, request.query["name"][0]
    data = request.data
    metadata = data.get("meta", data) if isinstance(data, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return (bucket, name) if name else None


def _object_target(request: Any, storage: Any) -> Target | None:
    return request.params["bucket_name"], request.params["object_id"]


def _destination_target(request: Any, storage: Any) -> Target | None:
    return request.params["dest_bucket_name"], request.params["dest_object_id"]


@dataclass(frozen=True)
class _Guard:
    handler: str  # attribute of gcp_storage_emulator.handlers.objects
    target_of: TargetOf
    must_exist: bool = False  # delete/patch of a missing object: leave the 404 to upstream


_GUARDS = (
    _Guard("insert", _upload_target),  # media, multipart and resumable initiation
    _Guard("upload_partial", _resumable_target),  # resumable chunks, incl. the finalizing one
    _Guard("copy", _destination_target),
    _Guard("rewrite", _destination_target),
    _Guard("compose", _object_target),
    _Guard("patch", _object_target, must_exist=True),
    _Guard("delete", _object_target, must_exist=True),
)


def _live_object(storage: Any, bucket: str, name: str) -> Mapping[str, Any] | None:
    from gcp_storage_emulator.exceptions import NotFound

    try:
        resource: Mapping[str, Any] = storage.get_file_obj(bucket, name)
    except NotFound:
        return None
    return resource


def _answer(response: Any, status: HTTPStatus, body: dict[str, Any]) -> None:
    response.status = status
    response.json(body)


def _precondition_failure(request: Any, storage: Any, guard: _Guard) -> str | None:
    """Why the request's preconditions fail on its target object, or None if they hold."""
    preconditions = Preconditions.from_query(request.query)
    target = guard.target_of(request, storage) if preconditions.given else None
    if target is None:
        return None
    live = _live_object(storage, *target)
    if guard.must_exist and live is None:
        return None
    failed = preconditions.violation(live)
    return None if failed is None else f"{target[0]}/{target[1]}: {failed}"


def _guarded(handler: Callable[..., Any], guard: _Guard) -> Callable[..., Any]:
    """``handler`` behind the precondition check, both under ``_WRITE_LOCK``."""

    @functools.wraps(handler)
    def guarded(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            try:
                failed = _precondition_failure(request, storage, guard)
            except ValueError as exc:
                status = HTTPStatus.BAD_REQUEST
                return _answer(response, status, error_body(status, "invalid", str(exc), str(exc)))
            if failed is not None:
                status = HTTPStatus.PRECONDITION_FAILED
                detail = f"{PRECONDITION_FAILED_MESSAGE} ({failed})"
                body = error_body(status, "conditionNotMet", PRECONDITION_FAILED_MESSAGE, detail)
                return _answer(response, status, body)
            return handler(request, response, storage, *args, **kwargs)

    return guarded


# -- objects.list paging ------------------------------------------------------------------------
# Upstream answers objects.list with every object at once and ignores ``startOffset``,
# ``endOffset``, ``maxResults`` and ``pageToken``. GCS itself returns at most ``maxResults``
# (default and ceiling 1,000) names per page in lexicographic order, with a ``nextPageToken``;
# ``startOffset`` is inclusive, ``endOffset`` exclusive. The wrapper below pages upstream's
# answer the same way (the token is the last name returned), so a listing that asks for 20
# names after a key gets 20 names after that key in one request, as in the cloud.
LIST_PAGE_MAX = 1000


def _query_value(request: Any, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


def page_listing(body: dict[str, Any], query: Callable[[str], str | None]) -> dict[str, Any]:
    """``body`` (upstream's objects.list answer) cut to one GCS-style page for ``query``."""
    items = sorted(body.get("items") or [], key=lambda item: item["name"])
    start, end = query("startOffset"), query("endOffset")
    token = query("pageToken")
    after = base64.urlsafe_b64decode(token.encode()).decode() if token else None
    items = [
        item
        for item in items
        if (start is None or item["name"] >= start)
        and (end is None or item["name"] < end)
        and (after is None or item["name"] > after)
    ]
    raw_max = query("maxResults")
    size = min(int(raw_max), LIST_PAGE_MAX) if raw_max and raw_max.isdigit() else LIST_PAGE_MAX
    size = max(size, 1)
    page = {**body, "items": items[:size]}
    if token:
        page["prefixes"] = []  # prefixes come with the first page
    if len(items) > size:
        page["nextPageToken"] = base64.urlsafe_b64encode(items[size - 1]["name"].encode()).decode()
    return page


def _paged(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The ``ls`` handler, its answer paged as :func:`page_listing` says."""

    @functools.wraps(handler)
    def paged(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        result = handler(request, response, storage, *args, **kwargs)
        if response.status == HTTPStatus.OK and response._content:
            try:
                body = json.loads(response._content)
                response.json(page_listing(body, lambda name: _query_value(request, name)))
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                status = HTTPStatus.BAD_REQUEST
                _answer(response, status, error_body(status, "invalid", str(exc), str(exc)))
        return result

    return paged


def _skip_in_memory_metadata_dumps() -> None:
    """Upstream re-serializes the metadata of every object (``json.dumps(..., indent=2)`` into
    ``.meta``) after each write, which makes N writes cost O(N²): 20,000 small objects took
    longer than a test may. ``.meta`` is read only when a server starts, and an in-memory
    store starts empty, so with ``--in-memory`` the dump is skipped; on disk it stays."""
    from gcp_storage_emulator.storage import Storage

    upstream = Storage._write_config_to_file
    if getattr(upstream, "_drivepipe_wrapped", False):
        return

    def write_config(self: Any) -> None:
        if not self._use_memory_fs:
            upstream(self)

    write_config._drivepipe_wrapped = True  # type: ignore[attr-defined]
    Storage._write_config_to_file = write_config


def install() -> None:
    """Wrap the emulator's object-writing and listing handlers in this process (idempotent)."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    if getattr(objects, _INSTALLED_MARK, False):
        return
    replacements: dict[Callable[..., Any], Callable[..., Any]] = {objects.ls: _paged(objects.ls)}
    objects.ls = replacements[objects.ls]
    _skip_in_memory_metadata_dumps()
    for guard in _GUARDS:
        original = getattr(objects, guard.handler)
        wrapped = _guarded(original, guard)
        setattr(objects, guard.handler, wrapped)  # module-level calls and Router's insert fallback
        replacements[original] = wrapped
    for _pattern, routes in server.HANDLERS:  # the routing table captured the originals
        for method, handler in routes.items():
            if handler in replacements:
                routes[method] = replacements[handler]
    setattr(objects, _INSTALLED_MARK, True)


def main(argv: Sequence[str] | None = None) -> None:
    """Install the precondition checks, then run the upstream emulator CLI."""
    try:
        from gcp_storage_emulator import __main__ as upstream
    except ImportError as exc:
        sys.exit(
            f"gcp-storage-emulator is not installed for {sys.executable} ({exc}); "
            "install requirements/dev.txt (make setup)"
        )
    install()
    upstream.main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
