"""Fault injection (errors, dropped connections, damaged bodies, latency) and request stats."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from devstack.drive_emulator.errors import ApiError, rate_limited

FAULT_KINDS = ("rate_limit_403", "429", "503", "reset", "truncate", "corrupt")
MEDIA_ONLY_KINDS = frozenset({"truncate", "corrupt"})
# files.list over several parents answers for the first parent only (rclone #3114), and
# says so with incompleteSearch: true ("flagged") or does not ("silent").
INCOMPLETE_BATCH_MODES = ("flagged", "silent")


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong, and how often. `rate` is the chance a request gets one fault."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    latency_s: float = 0.0
    latency_spike_s: float = 0.0
    latency_spike_rate: float = 0.0
    bandwidth_bps: float | None = None
    seed: int | None = None
    retry_after_s: float | None = None
    rate_limit_qps: float | None = None
    incomplete_batches: str | None = None  # one of INCOMPLETE_BATCH_MODES
    # Every changes.list answers as for an expired page token (400 invalid, pageToken).
    expire_page_tokens: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        for name in ("rate", "latency_spike_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.bandwidth_bps is not None and self.bandwidth_bps <= 0:
            raise ValueError("bandwidth_bps must be positive")
        if self.rate_limit_qps is not None and self.rate_limit_qps <= 0:
            raise ValueError("rate_limit_qps must be positive")
        if self.incomplete_batches not in (None, *INCOMPLETE_BATCH_MODES):
            raise ValueError(
                f"incomplete_batches must be one of {INCOMPLETE_BATCH_MODES}, "
                f"got {self.incomplete_batches!r}"
            )


LOG_SIZE = 100_000  # request events kept (the oldest are dropped past it)


class RequestEvent(NamedTuple):
    """One line of the request log: a request arriving (``start``) or answered (``end``)."""

    seq: int  # position in the log, from 0 (since the last reset)
    phase: str  # "start" | "end"
    endpoint: str  # list, get, media, export, changes, ...
    subject: str  # the file id (get, media, export) or the listed folder ids, comma-separated
    in_flight: int  # requests being served once this one started / before it ended


@dataclass
class EmulatorStats:
    """Counters shared by the server threads; read them through `snapshot()` or the fields."""

    requests: Counter[str] = field(default_factory=Counter)
    # Folder id -> how many times a files.list query asked for its children (first pages only).
    listed_folders: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    bytes_sent: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # Every request's arrival and answer, in order (read it through `request_log()`).
    log: deque[RequestEvent] = field(default_factory=lambda: deque(maxlen=LOG_SIZE))
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self.requests[endpoint] += 1

    def count_listed(self, folder_ids: list[str]) -> None:
        """A files.list request began listing these folders (``'<id>' in parents`` in ``q``)."""
        with self._lock:
            self.listed_folders.update(folder_ids)

    def enter(self, endpoint: str = "", subject: str = "") -> None:
        """A request started; tracks the highest number served at once, and logs it."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._append("start", endpoint, subject)

    def leave(self, endpoint: str = "", subject: str = "") -> None:
        """A request was answered (its body written)."""
        with self._lock:
            self._append("end", endpoint, subject)
            self.in_flight -= 1

    def _append(self, phase: str, endpoint: str, subject: str) -> None:
        self.log.append(RequestEvent(self._seq, phase, endpoint, subject, self.in_flight))
        self._seq += 1

    def request_log(self) -> list[RequestEvent]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self.log)

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def count_status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] += 1

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy: {"requests": {...}, "faults": {...}, "statuses": {...}, ...}."""
        with self._lock:
            return {
                "requests": dict(self.requests),
                "listed_folders": dict(self.listed_folders),
                "faults": dict(self.faults),
                "statuses": dict(self.statuses),
                "bytes_sent": self.bytes_sent,
                "max_in_flight": self.max_in_flight,
            }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.listed_folders.clear()
            self.faults.clear()
            self.statuses.clear()
            self.bytes_sent = 0
            self.max_in_flight = self.in_flight
            self.log.clear()
            self._seq = 0


class FaultInjector:
    """Decides, per request, which fault (if any) to inject. Thread-safe; swappable config."""

    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._seen: Counter[str] = Counter()
            self._tokens = float(max(1.0, config.rate_limit_qps or 1.0))
            self._refilled_at = time.monotonic()

    def latency(self) -> float:
        """Seconds to wait before answering this request."""
        with self._lock:
            cfg = self.config
            spike = cfg.latency_spike_rate > 0 and self._rng.random() < cfg.latency_spike_rate
            return cfg.latency_s + (cfg.latency_spike_s if spike else 0.0)

    def over_qps(self) -> ApiError | None:
        """403 userRateLimitExceeded when the token bucket is empty, else None."""
        with self._lock:
            qps = self.config.rate_limit_qps
            if qps is None:
                return None
            now = time.monotonic()
            capacity = max(1.0, qps)
            self._tokens = min(capacity, self._tokens + (now - self._refilled_at) * qps)
            self._refilled_at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return rate_limited("userRateLimitExceeded")

    def pick(self, media: bool = False, request: str | None = None) -> str | None:
        """The fault kind for this request, or None. Media-only kinds only for media bodies.

        With a seed and the ``request`` (method and URL), the choice depends only on the seed,
        the request and how many times it was made before: the same requests get the same
        faults whatever order a client's threads send them in.
        """
        with self._lock:
            cfg = self.config
            if cfg.rate <= 0:
                return None
            rng = self._rng
            if cfg.seed is not None and request is not None:
                nth = self._seen[request]
                self._seen[request] += 1
                rng = random.Random(f"{cfg.seed}\x00{request}\x00{nth}")
            if rng.random() >= cfg.rate:
                return None
            kinds = [k for k in cfg.kinds if media or k not in MEDIA_ONLY_KINDS]
            return rng.choice(kinds) if kinds else None

    def error_for(self, kind: str) -> ApiError:
        """The HTTP error an error-type fault answers with."""
        retry = self.config.retry_after_s
        headers = {"Retry-After": f"{retry:g}"} if retry is not None else None
        if kind == "rate_limit_403":
            with self._lock:
                reason = self._rng.choice(("userRateLimitExceeded", "rateLimitExceeded"))
            error = rate_limited(reason)
            error.headers = headers
            return error
        if kind == "429":
            return ApiError(
                429, "rateLimitExceeded", "Rate Limit Exceeded", "usageLimits", headers=headers
            )
        if kind == "503":
            return ApiError(503, "backendError", "Backend Error", headers=headers)
        raise ValueError(f"{kind} is not an error fault")

    def corrupt_offsets(self, length: int) -> list[int]:
        """Byte offsets to flip in a body of `length` bytes (at least one when length > 0)."""
        if length <= 0:
            return []
        with self._lock:
            return sorted({self._rng.randrange(length) for _ in range(min(8, length))})
