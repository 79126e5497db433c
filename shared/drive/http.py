"""One pooled requests.Session with credentials, timeouts and retries for Drive API calls."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import IO, Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from shared.drive.auth import DriveAuth, mask_secrets
from shared.drive.inflight import RequestSlots
from shared.drive.models import ClientStats
from shared.drive.retry import RetryPolicy, error_from_response, retry_after_seconds, retry_label
from shared.drive.throttle import AdaptiveRateLimiter
from shared.errors import RATE_LIMIT_REASONS, DriveError
from shared.log import get_logger

log = get_logger("drive")  # under drivepipe: JSON lines in the cloud, like every module
T = TypeVar("T")
Timeout = tuple[float, float]


class _AttemptFailed(Exception):
    """One attempt failed with ``error``; ``retry_after`` is the server's hint, if any."""

    def __init__(self, error: DriveError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _transport_error(exc: requests.RequestException, what: str) -> DriveError:
    """Map a requests exception to a (retryable) DriveError without leaking the URL's key."""
    if isinstance(exc, requests.Timeout):
        reason = "timeout"
    elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
        reason = "truncated"
    elif isinstance(exc, requests.ConnectionError):
        reason = "connectionError"
    else:
        reason = "requestError"
    detail = mask_secrets(f"{type(exc).__name__}: {exc}")[:300]
    return DriveError(f"{what}: {detail}", reason=reason)


def _session_for(base_url: str) -> requests.Session:
    """A Session whose environment settings (proxies, CA bundle) are read once, here.

    With ``trust_env`` on, requests re-reads the proxy variables from os.environ on every
    request (``merge_environment_settings``), about 0.5 ms each: a tenth of a small request's
    client time. We talk to one host, so resolving them once gives the same answer.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(base_url)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


def is_rate_limit(error: DriveError) -> bool:
    """True for 429 and for 403 with a rate-limit reason: the quota says slow down."""
    return error.status == 429 or (error.status == 403 and error.reason in RATE_LIMIT_REASONS)


class DriveHttp:
    """Sends GET requests to the Drive API, retrying transient failures per a RetryPolicy.

    With a ``limiter`` every attempt waits for its token, and rate-limit answers slow down
    all threads of the client (see shared.drive.throttle). With ``slots`` (see
    :meth:`bounded`) at most that many attempts are in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        auth: DriveAuth,
        *,
        retry: RetryPolicy,
        timeout: Timeout,
        pool_size: int,
        stats: ClientStats,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        limiter: AdaptiveRateLimiter | None = None,
    ):
        self.limiter = limiter
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.retry = retry
        self.timeout = timeout
        self.stats = stats
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.session = _session_for(self.base_url)
        self.slots: RequestSlots | None = None
        self._pool_lock = threading.Lock()
        self._pool_size = [0]  # shared with bounded() views, which share the session
        self.ensure_pool(pool_size)

    def bounded(self, slots: RequestSlots) -> DriveHttp:
        """A view sending through ``slots``: same session, limiter, stats and retry policy."""
        view = copy.copy(self)
        view.slots = slots
        view.ensure_pool(slots.limit + 2)
        return view

    @property
    def pool_size(self) -> int:
        """Pooled connections per host."""
        return self._pool_size[0]

    def ensure_pool(self, size: int) -> None:
        """Keep at least ``size`` pooled connections per host (so no connection is discarded)."""
        with self._pool_lock:
            if size <= self._pool_size[0]:
                return
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
            self._pool_size[0] = size

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def get_json(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET ``path`` (relative to the base URL) and return its JSON body, with retries."""

        def attempt() -> dict[str, Any]:
            with self._send(path, params, stream=False) as response:
                try:
                    body = response.json()
                except ValueError:
                    raise _AttemptFailed(
                        DriveError(f"GET {path}: response is not JSON", reason="truncated")
                    ) from None
            if not isinstance(body, dict):
                raise DriveError(f"GET {path}: expected a JSON object", status=response.status_code)
            return body

        return self._with_retries(f"GET {path}", attempt)[0]

    def post_json(self, path: str, params: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body to ``path``; the JSON answer (``{}`` for 204), with retries.

        Only the watch methods POST (changes.watch, channels.stop); a retried watch whose first
        attempt did reach Drive fails on the reused channel id, and the caller opens another.
        """

        def attempt() -> dict[str, Any]:
            query = dict(params)
            headers: dict[str, str] = {}
            self.auth.apply(query, headers)
            self.stats.add_request()
            try:
                response = self.session.post(
                    f"{self.base_url}/{path}",
                    params=query,
                    json=body,
                    headers=headers,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                raise _AttemptFailed(_transport_error(exc, f"POST {path}")) from None
            with response:
                if response.status_code >= 400:
                    raise _AttemptFailed(
                        error_from_response(response), retry_after_seconds(response)
                    )
                if response.status_code == 204 or not response.content:
                    return {}
                try:
                    answer = response.json()
                except ValueError:
                    raise DriveError(f"POST {path}: response is not JSON") from None
            if not isinstance(answer, dict):
                raise DriveError(f"POST {path}: expected a JSON object")
            return answer

        return self._with_retries(f"POST {path}", attempt)[0]

    def download(
        self,
        path: str,
        params: dict[str, Any],
        dest: IO[bytes],
        *,
        expected_size: int | None,
        expected_digest: tuple[str, str] | None,
        chunk_size: int,
    ) -> tuple[int, str, int]:
        """Stream ``path`` into ``dest`` (seekable), verified; return (bytes, hex, attempts).

        ``expected_digest`` is ``(algorithm, hex)`` (sha256 or md5); the returned hex digest is
        in that algorithm, or sha256 when there is nothing to verify.
        Every attempt first rewinds ``dest`` to where it stood on entry and truncates it there,
        so a retried body never mixes with a failed one.
        """
        start = dest.tell()
        algorithm, expected_hex = expected_digest or ("sha256", None)

        def attempt() -> tuple[int, str]:
            dest.seek(start)
            dest.truncate()
            digest = hashlib.new(algorithm, usedforsecurity=False)
            received = 0
            with self._send(path, params, stream=True) as response:
                try:
                    for chunk in response.iter_content(chunk_size):
                        dest.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                except requests.RequestException as exc:
                    raise _AttemptFailed(_transport_error(exc, f"GET {path}")) from None
                finally:
                    self.stats.add_bytes(received)
                declared = response.headers.get("Content-Length")
                encoded = response.headers.get("Content-Encoding")
                if declared and not encoded and received < int(declared):
                    raise _AttemptFailed(self._bad_body(path, "truncated", received, declared))
            if expected_size is not None and received != expected_size:
                reason = "truncated" if received < expected_size else "checksumMismatch"
                raise _AttemptFailed(self._bad_body(path, reason, received, str(expected_size)))
            actual = digest.hexdigest()
            if expected_hex and actual != expected_hex.lower():
                raise _AttemptFailed(
                    DriveError(
                        f"GET {path}: {algorithm} {actual} does not match the checksum Drive "
                        f"reported ({expected_hex})",
                        reason="checksumMismatch",
                    )
                )
            return received, actual

        (received, actual), attempts = self._with_retries(f"GET {path}", attempt)
        return received, actual, attempts

    @staticmethod
    def _bad_body(path: str, reason: str, received: int, expected: str) -> DriveError:
        return DriveError(
            f"GET {path}: received {received} bytes, expected {expected}", reason=reason
        )

    @contextmanager
    def _send(self, path: str, params: dict[str, Any], *, stream: bool) -> Iterator[Any]:
        """One attempt, holding an in-flight slot (if bounded) until its body is read.

        JSON requests (listing, metadata) take a slot before streamed downloads do.
        """
        slot = self.slots.held(urgent=not stream) if self.slots is not None else nullcontext()
        with slot, self._send_now(path, params, stream=stream) as response:
            yield response

    @contextmanager
    def _send_now(self, path: str, params: dict[str, Any], *, stream: bool) -> Iterator[Any]:
        """One authorised GET: yields the response, raises _AttemptFailed for HTTP errors."""
        query = dict(params)
        headers: dict[str, str] = {}
        self.auth.apply(query, headers)
        url = f"{self.base_url}/{path}"
        sent_at = self.limiter.acquire() if self.limiter is not None else 0.0
        self.stats.add_request()
        began = time.monotonic()
        try:
            response = self.session.get(
                url, params=query, headers=headers, timeout=self.timeout, stream=stream
            )
        except requests.RequestException as exc:
            raise _AttemptFailed(_transport_error(exc, f"GET {path}")) from None
        if log.isEnabledFor(logging.DEBUG):  # the path only: keys live in the query string
            took_ms = round((time.monotonic() - began) * 1000, 1)
            log.debug(
                "drive request",
                extra={"path": path, "status": response.status_code, "ms": took_ms},
            )
        try:
            if response.status_code >= 400:
                try:
                    error = error_from_response(response)
                except requests.RequestException as exc:
                    raise _AttemptFailed(_transport_error(exc, f"GET {path}")) from None
                if self.limiter is not None and is_rate_limit(error):
                    self.limiter.on_rate_limited(sent_at)
                raise _AttemptFailed(error, retry_after_seconds(response))
            if self.limiter is not None:
                self.limiter.on_success()
            yield response
        finally:
            response.close()

    def _with_retries(self, what: str, attempt: Callable[[], T]) -> tuple[T, int]:
        """Run ``attempt`` until it succeeds, fails for good, or the attempt bound is reached."""
        for number in range(1, self.retry.max_attempts + 1):
            try:
                result = attempt()
            except _AttemptFailed as failed:
                error = failed.error
                if not error.retryable or number == self.retry.max_attempts:
                    self.stats.note_attempts(number)
                    raise error from None
                with self._rng_lock:
                    delay = self.retry.delay(number, retry_after=failed.retry_after, rng=self._rng)
                self.stats.add_retry(retry_label(error))
                log.debug("%s failed (%s); retry %d in %.3fs", what, error, number, delay)
                self._sleep(delay)
                continue
            except DriveError:
                self.stats.note_attempts(number)
                raise
            self.stats.note_attempts(number)
            return result, number
        raise AssertionError("unreachable: max_attempts >= 1")
