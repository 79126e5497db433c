"""What the cloud handlers call: one function per trigger, the same on AWS and GCP.

Handlers parse their cloud's event into :mod:`shared.triggers.events` types, call one of
these, and shape the :class:`~shared.triggers.http.Response` or outcome dict for their cloud.
Nothing here knows which cloud it runs on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared import deadline
from shared.config import Pipeline, PipelineFile, load_config_from_env
from shared.errors import (
    ApiError,
    ConfigError,
    DriveAuthError,
    DriveError,
    LeaseHeld,
    RetryableError,
    StorageError,
    StorageNotFound,
    is_transient,
)
from shared.log import get_logger
from shared.run.manifest import RUN_ID_PATTERN, RunManifest
from shared.run.single import ObjectRequest, relative_to_prefix, run_object
from shared.run.state import claim_event, complete_event
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.storage.base import key_problem
from shared.storage.layout import is_reserved, run_key
from shared.triggers.events import ObjectEvent
from shared.triggers.http import (
    Response,
    error_response,
    parse_json_object,
    parse_sync_body,
    validate_sync_body,
)

if TYPE_CHECKING:
    from shared.run.deferred import DeferredRequest
    from shared.run.fanout.planner import FanoutStarted

log = get_logger("service")
MAX_REQUEST_FILE_BYTES = 64 * 1024
T = TypeVar("T")
_config_location: dict[str, Any] = {}


def configure(*, base_dir: str | os.PathLike[str], default: str) -> None:
    """Where the handler's pipelines file is: ``$DRIVEPIPE_CONFIG``, else ``default``.

    A relative path is relative to ``base_dir`` (the handler's directory), so the file is found
    from any working directory; the environment is left as it is.
    """
    _config_location.update(base_dir=str(base_dir), default=default)


def config() -> PipelineFile:
    """The deployed configuration, loaded and validated once per process."""
    return load_config_from_env(**_config_location)


def schedule_expression() -> str | None:
    """The schedule for ``on_schedule`` from ``[settings].schedule``, if configured."""
    return config().settings.schedule


def push_enabled() -> bool:
    """True when a pipeline has ``push = true``: the notifications route is served then."""
    return any(p.push for p in config().pipelines.values())


def health() -> Response:
    """Liveness plus whether the configuration loads."""
    try:
        names = sorted(config().pipelines)
    except ConfigError as exc:
        return Response(503, {"status": "error", "error": {"code": "config", "message": str(exc)}})
    return Response(200, {"status": "ok", "pipelines": names})


def _pipeline(name: str) -> Pipeline:
    cfg = config()
    pipeline = cfg.get(name)
    if pipeline is None:
        known = ", ".join(sorted(cfg.pipelines))
        raise ApiError(
            f"unknown pipeline '{name}' (configured: {known})",
            status=404,
            code="unknown_pipeline",
            field="pipeline",
        )
    return pipeline


def sync_request_from_body(
    body: dict[str, Any] | bytes | str | None, *, trigger: str
) -> SyncRequest:
    """Validate a sync body (HTTP or request file) against the pipeline's allowed overrides."""
    parsed = validate_sync_body(body) if isinstance(body, dict) else parse_sync_body(body)
    pipeline = _pipeline(parsed.pipeline)
    overrides = parsed.overrides()
    for name in overrides:
        if name not in pipeline.allow_overrides:
            raise ApiError(
                f"{name}: override not allowed for pipeline '{pipeline.name}'",
                status=400,
                code="override_not_allowed",
                field=name,
            )
    return SyncRequest(pipeline=pipeline, trigger=trigger, **overrides)


def http_sync(raw_body: bytes | str | None, *, trigger: str = "http") -> Response:
    """``POST /sync``: validate, run, and return the manifest summary."""
    request: SyncRequest | None = None
    try:
        request = sync_request_from_body(raw_body, trigger=trigger)
        manifest = run_or_fan_out(request)
    except ApiError as exc:
        return error_response(exc)
    except LeaseHeld as exc:
        return sync_running_response(exc)
    except ConfigError as exc:
        return error_response(ApiError(str(exc), status=500, code="config_error"))
    except DriveAuthError as exc:
        return error_response(ApiError(str(exc), status=502, code="drive_auth"))
    except DriveError as exc:
        overridden = request is not None and request.folder_id is not None
        return error_response(drive_error(exc, overridden=overridden))
    except (StorageError, RetryableError) as exc:
        return error_response(ApiError(str(exc), status=503, code="unavailable"))
    if not isinstance(manifest, RunManifest):  # fanned out: 202 + where to watch it
        return fanout_accepted_response(manifest)
    _run_deferred(request.pipeline)
    return Response(200, manifest.summary())


def drive_error(exc: DriveError, *, overridden: bool) -> ApiError:
    """What a failed Drive call means to the caller: retry later only if retrying can help.

    A folder Drive cannot find is 404, an id that is not a folder 400 (both name
    ``folder_id``); a transient failure is 503; any other refusal (permissions, a file
    Drive will not serve) is 502, since asking again will not change it.
    """
    field = "folder_id" if overridden else None
    if exc.retryable:
        return ApiError(str(exc), status=503, code="unavailable")
    if exc.status == 404:
        return ApiError(str(exc), status=404, code="drive_not_found", field=field)
    if exc.reason == "notAFolder":
        return ApiError(str(exc), status=400, code="invalid_field", field="folder_id")
    return ApiError(str(exc), status=502, code="drive_rejected")


def sync_running_response(exc: LeaseHeld) -> Response:
    """409: another sync of the pipeline holds its lease (which run, and until when)."""
    response = error_response(
        ApiError(f"another sync is running: {exc}", status=409, code="sync_running")
    )
    response.body["error"]["run_id"] = exc.holder.run_id
    response.body["error"]["expires_at"] = json.loads(exc.holder.to_json())["expires_at_iso"]
    return response


def http_get_run(run_id: str, pipeline: str | None = None) -> Response:
    """``GET /runs/{run_id}``: the stored manifest of a run, searched in every destination."""
    if not RUN_ID_PATTERN.match(run_id or ""):
        return error_response(
            ApiError("run_id is malformed", status=400, code="invalid_field", field="run_id")
        )
    try:
        pipelines = [_pipeline(pipeline)] if pipeline else list(config().pipelines.values())
        for destination in sorted({p.output.url for p in pipelines}):
            found = _stored_run(destination, run_id)
            if found is not None:
                return Response(200, found)
    except ApiError as exc:
        return error_response(exc)
    except StorageError as exc:  # the manifest's read, or a fanned-out run's progress
        return error_response(ApiError(str(exc), status=503, code="unavailable"))
    return error_response(ApiError(f"no run '{run_id}'", status=404, code="unknown_run"))


RUNS_QUERY = ("pipeline", "status", "limit", "cursor")


def http_list_runs(query: dict[str, str]) -> Response:
    """``GET /runs?pipeline=&status=&limit=&cursor=``: the run history, newest first.

    Reads the index in each destination (the pipeline's, or every configured one merged):
    one list request plus one small read per run returned, however many runs exist.
    """
    from shared.run.history import list_runs, merge_pages

    try:
        pipeline, status, limit, cursor = _runs_query(query)
        pipelines = [_pipeline(pipeline)] if pipeline else list(config().pipelines.values())
    except ApiError as exc:
        return error_response(exc)
    pages = [
        list_runs(open_storage(url), pipeline=pipeline, status=status, limit=limit, cursor=cursor)
        for url in sorted({p.output.url for p in pipelines})
    ]
    page = pages[0] if len(pages) == 1 else merge_pages(pages, limit)
    return Response(200, page.to_dict())


def _runs_query(query: dict[str, str]) -> tuple[str | None, str | None, int, str | None]:
    """The checked parameters of ``GET /runs``; ``ApiError`` (400) names a bad one."""
    from shared.run.history import DEFAULT_LIMIT, MAX_LIMIT, RUN_STATUSES

    def bad(name: str, message: str) -> ApiError:
        return ApiError(f"{name}: {message}", status=400, code="invalid_field", field=name)

    unknown = sorted(set(query) - set(RUNS_QUERY))
    if unknown:
        raise bad(unknown[0], f"unknown parameter (use {', '.join(RUNS_QUERY)})")
    status = query.get("status") or None
    if status is not None and status not in RUN_STATUSES:
        raise bad("status", f"must be one of {', '.join(RUN_STATUSES)}")
    raw_limit = query.get("limit") or str(DEFAULT_LIMIT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise bad("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    cursor = query.get("cursor") or None
    if cursor is not None and not RUN_ID_PATTERN.match(cursor):
        raise bad("cursor", "must be the next_cursor of a previous page (a run id)")
    return query.get("pipeline") or None, status, int(raw_limit), cursor


def _stored_run(destination: str, run_id: str) -> dict[str, Any] | None:
    """The run's manifest in ``destination``, else its fan-out progress, else ``None``."""
    try:
        manifest: dict[str, Any] = json.loads(open_storage(destination).read(run_key(run_id)))
    except StorageNotFound:
        return fanout_progress(destination, run_id)
    return manifest


def _outcome(
    outcome: str, reason: str | None = None, summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"outcome": outcome, "reason": reason, "summary": summary}


def _is_own_output(event: ObjectEvent, cfg: PipelineFile) -> bool:
    return any(event.url.startswith(p.output.url.rstrip("/") + "/") for p in cfg.pipelines.values())


def on_object(event: ObjectEvent, *, trigger: str) -> dict[str, Any]:
    """A storage upload: transform an incoming data file, or start a sync from a request file.

    Keys under any pipeline's output, bookkeeping prefixes, and unsafe keys are ignored, so a
    function writing into the bucket that triggers it can never trigger itself.
    """
    problem = key_problem(event.key)
    if problem:
        return _outcome("ignored", problem)
    if is_reserved(event.key):
        return _outcome("ignored", "bookkeeping prefix")
    cfg = config()
    if _is_own_output(event, cfg):
        return _outcome("ignored", "under a pipeline's output prefix")
    requests_url = cfg.settings.requests_url
    if requests_url and relative_to_prefix(event.url, requests_url):
        return _on_request_file(event, requests_url, trigger)
    for pipeline in cfg.pipelines.values():
        incoming = pipeline.source.incoming_url
        relpath = relative_to_prefix(event.url, incoming) if incoming else None
        if incoming and relpath:
            return _on_data_file(event, pipeline, incoming, relpath, trigger)
    return _outcome("ignored", "no pipeline takes this key")


def once(
    dest_url: str, dedupe_id: str, outcome: str, work: Callable[[], RunManifest]
) -> dict[str, Any]:
    """Run ``work`` for an event at most once: claim it, run, mark it done, drop the claim.

    A concurrent delivery waits (bounded) for the claimant and then answers "duplicate"; if the
    work fails, the claim is released so a redelivery can try again.
    """
    try:
        dest = open_storage(dest_url)
        claim = claim_event(dest, dedupe_id)
    except StorageError as exc:
        raise StorageError(f"cannot claim event in {dest_url}: {exc}") from exc
    if claim is None:
        return _outcome("duplicate", f"{dedupe_id} was already processed")
    claim.start_renewing()
    try:
        manifest = work()
        complete_event(dest, dedupe_id, manifest.run_id, claim)
    finally:
        claim.release()
    log.info(
        "%s run %s finished",
        outcome,
        manifest.run_id,
        extra={"run_id": manifest.run_id, "pipeline": manifest.pipeline, "event": dedupe_id},
    )
    return {**_outcome(outcome, None, manifest.summary()), "run_id": manifest.run_id}


def _on_data_file(
    event: ObjectEvent, pipeline: Pipeline, incoming: str, relpath: str, trigger: str
) -> dict[str, Any]:
    request = ObjectRequest(
        pipeline=pipeline, source_url=incoming, relpath=relpath, trigger=trigger
    )
    return once(pipeline.output.url, event.dedupe_id, "transformed", lambda: run_object(request))


def _on_request_file(event: ObjectEvent, requests_url: str, trigger: str) -> dict[str, Any]:
    relpath = relative_to_prefix(event.url, requests_url) or ""
    if not relpath.endswith(".json"):
        return _outcome("ignored", "request files must end in .json")
    try:
        source = open_storage(requests_url)
        raw = source.read(relpath)
    except StorageNotFound:
        return _outcome("ignored", "request file no longer exists")
    except StorageError as exc:
        raise StorageError(f"cannot read request file {event.url}: {exc}") from exc
    try:
        body = parse_json_object(raw, max_bytes=MAX_REQUEST_FILE_BYTES)
        request = sync_request_from_body(body, trigger=f"{trigger}:request")
    except ApiError as exc:
        log.error("bad request file", extra={"url": event.url, "error": exc.message})
        return _outcome("ignored", f"bad request file: {exc.message}")
    # errors.is_transient decides about failures (storage and retryable Drive errors
    # redeliver, a missing folder stays gone); a running sync defers this one until it ends.
    from shared.run.deferred import DeferredRequest
    from shared.triggers import deferred

    work = lambda: after_stalled_run(request, lambda: run_sync(request))  # noqa: E731
    try:
        result = once(request.pipeline.output.url, event.dedupe_id, "sync", work)
    except LeaseHeld as held:
        waiting = DeferredRequest(
            request.pipeline.name, event.dedupe_id, event.url, body, request.trigger
        )
        return deferred.defer(request.pipeline, waiting, held, _run_one_deferred)
    _run_deferred(request.pipeline)
    return result


def _run_deferred(pipeline: Pipeline) -> None:
    """Run the request-file syncs that waited for this pipeline's sync (never raises)."""
    from shared.triggers import deferred

    deferred.run_pending(pipeline, _run_one_deferred)


def _run_one_deferred(waiting: DeferredRequest) -> dict[str, Any] | None:
    """One waiting request's sync, once per event; None while the lease is held again."""
    try:
        request = sync_request_from_body(waiting.body, trigger=waiting.trigger)
    except ApiError as exc:  # the pipeline's config changed since: report, never retry
        log.error("deferred request dropped", extra={"url": waiting.url, "error": exc.message})
        return _outcome("ignored", f"bad request file: {exc.message}")
    work = lambda: after_stalled_run(request, lambda: run_sync(request))  # noqa: E731
    try:
        return once(request.pipeline.output.url, waiting.dedupe_id, "sync", work)
    except LeaseHeld:
        return None


def on_schedule(pipelines: list[str] | None, *, trigger: str) -> list[dict[str, Any]]:
    """Run the named pipelines (or every ``scheduled`` one) incrementally.

    A pipeline reached once only the function's reserve of time is left is not started (the
    result says so): the next tick syncs it."""
    cfg = config()
    if pipelines is None:
        chosen = [p for p in cfg.pipelines.values() if p.scheduled]
    else:
        unknown = [n for n in pipelines if n not in cfg.pipelines]
        if unknown:
            log.error("unknown pipelines in schedule", extra={"pipelines": unknown})
        chosen = [cfg.pipelines[n] for n in pipelines if n in cfg.pipelines]
    results: list[dict[str, Any]] = []
    transient: list[str] = []
    for pipeline in chosen:
        late = deadline.refusal()  # an earlier pipeline took the function's time
        if late is not None:
            log.warning("scheduled sync not started", extra={"pipeline": pipeline.name})
            results.append({"pipeline": pipeline.name, "skipped": late})
            continue
        try:
            manifest = run_or_fan_out(SyncRequest(pipeline=pipeline, trigger=trigger))
            results.append({"pipeline": pipeline.name, "summary": manifest.summary()})
        except LeaseHeld as exc:  # the running sync covers this tick too
            log.warning(
                "sync already running", extra={"pipeline": pipeline.name, "error": str(exc)}
            )
            results.append(
                {"pipeline": pipeline.name, "skipped": f"another sync is running: {exc}"}
            )
        except (DriveError, StorageError, RetryableError, ConfigError) as exc:
            log.error("scheduled sync failed", extra={"pipeline": pipeline.name, "error": str(exc)})
            results.append({"pipeline": pipeline.name, "error": str(exc)})
            transient += [f"{pipeline.name}: {exc}"] if is_transient(exc) else []
    for pipeline in chosen:  # push pipelines: keep their notification channel open
        if pipeline.push:
            _channel_upkeep(pipeline, results)
    for pipeline in cfg.pipelines.values():  # what waited for a sync that ended meanwhile
        _run_deferred(pipeline)
    if transient:  # every pipeline had its turn; now ask the platform to redeliver the tick
        raise RetryableError("scheduled sync failed transiently: " + "; ".join(transient))
    if pipelines:
        results.extend(
            {"pipeline": n, "error": "unknown pipeline"}
            for n in pipelines
            if n not in cfg.pipelines
        )
    return results


def _channel_upkeep(pipeline: Pipeline, results: list[dict[str, Any]]) -> None:
    """Open, renew or reopen a push pipeline's channel; the outcome joins its result."""
    from shared.run.upkeep import channel_upkeep

    entry = next((r for r in results if r.get("pipeline") == pipeline.name), None)
    outcome = channel_upkeep(pipeline, entry)
    if entry is not None:
        entry["channel"] = outcome


# ---- fan-out: big syncs planned here, processed by queue workers ----------------------------


def run_or_fan_out(request: SyncRequest) -> RunManifest | FanoutStarted:
    """Hand a big sync to queue workers (``pipeline.fanout`` set and a queue configured),
    else run it inline. Small syncs (under ``fanout.min_files`` files to fetch) run inline."""
    return after_stalled_run(request, lambda: _run_or_fan_out(request))


def _run_or_fan_out(request: SyncRequest) -> RunManifest | FanoutStarted:
    from shared.run.fanout.planner import start_fanout
    from shared.run.fanout.queues import queue_from_env

    queue = queue_from_env() if request.pipeline.fanout and not request.dry_run else None
    if queue is not None:
        return start_fanout(request, queue)  # runs inline, on its own plan, when small
    return run_sync(request)


def after_stalled_run(request: SyncRequest, start: Callable[[], T]) -> T:
    """``start()``; if a fanned-out run whose finalizer died holds the sync lease, finish that
    run and ``start()`` once more (``LeaseHeld`` again: the caller answers 409 or skips)."""
    from shared.run.fanout.runs import finish_stalled_run

    try:
        return start()
    except LeaseHeld as held:
        if not finish_stalled_run(request.pipeline, held.holder):
            raise
    return start()


def fanout_accepted_response(started: FanoutStarted) -> Response:
    """``202 Accepted`` with the run id and the progress URL."""
    body = started.summary()
    return Response(202, body, {"Content-Type": "application/json", "Location": body["progress"]})


def fanout_progress(destination: str, run_id: str) -> dict[str, Any] | None:
    """Progress of a fanned-out run that has not finished yet, or ``None``."""
    from shared.run.fanout.progress import progress

    return progress(open_storage(destination), run_id)


def on_work_item(body: str | bytes, *, attempt: int = 1) -> dict[str, Any]:
    """A queue worker's delivery of one work item (SQS record body / Pub/Sub message data).

    Returns the outcome; raises on a crash or a transient failure, so the queue delivers the
    item again (and, after ``fanout.max_attempts``, dead-letters it). A message that is not a
    work item is dropped with a reason: no redelivery could fix it.
    """
    from shared.errors import BadWorkItem
    from shared.run.fanout.items import WorkItem
    from shared.run.fanout.worker import handle_item

    try:
        item = WorkItem.from_json(body)
    except BadWorkItem as exc:
        log.error("dropped a queue message", extra={"reason": str(exc)})
        return _outcome("dropped", str(exc))
    pipeline = config().get(item.pipeline)
    max_attempts = pipeline.fanout.max_attempts if pipeline and pipeline.fanout else None
    outcome = handle_item(item, pipeline, attempt=attempt, max_attempts=max_attempts)
    if pipeline is not None:  # the run may have ended with this item
        _run_deferred(pipeline)
    return {"outcome": outcome, "run_id": item.run_id, "item_id": item.item_id}


def on_dead_letter(body: str | bytes, *, deliveries: int | None = None) -> dict[str, Any]:
    """A work item that reached the dead-letter queue: record it as failed, with the reason."""
    from shared.errors import BadWorkItem
    from shared.run.fanout.items import WorkItem
    from shared.run.fanout.worker import dead_letter

    try:
        item = WorkItem.from_json(body)
    except BadWorkItem as exc:
        log.error("dropped a dead-lettered message", extra={"reason": str(exc)})
        return _outcome("dropped", str(exc))
    # Deferred request files are not run here (a small, short function without Drive
    # access): the next sync's end or schedule tick runs them.
    outcome = dead_letter(item, deliveries=deliveries)
    return {"outcome": outcome, "run_id": item.run_id, "item_id": item.item_id}
