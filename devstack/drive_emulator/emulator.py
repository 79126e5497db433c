"""DriveEmulator: serve a local directory as a Drive API v3 folder on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from devstack.drive_emulator.api import DriveApi, DriveSettings
from devstack.drive_emulator.changes import ChangesApi
from devstack.drive_emulator.exports import Exporter
from devstack.drive_emulator.faults import EmulatorStats, FaultConfig, FaultInjector
from devstack.drive_emulator.server import EmulatorServer
from devstack.drive_emulator.tree import DiskTree, TreeError
from devstack.drive_emulator.watch import WatchApi

DEFAULT_EXPORT_LIMIT = 10 * 1024 * 1024


class DriveEmulator:
    """A Drive API v3 server over `root`. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        root: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        root_id: str | None = None,
        drive_id: str | None = None,
        page_size_cap: int | None = None,
        faults: FaultConfig | None = None,
        export_limit_bytes: int = DEFAULT_EXPORT_LIMIT,
        api_keys: Iterable[str] | None = None,
        tokens: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
        watch_poll_interval: float | None = 0.2,
    ) -> None:
        if page_size_cap is not None and page_size_cap < 1:
            raise ValueError("page_size_cap must be at least 1")
        if export_limit_bytes < 0:
            raise ValueError("export_limit_bytes must not be negative")
        # In a shared drive the root folder's id is the drive id, as in the real service.
        self.tree = DiskTree(Path(root), root_id or drive_id)
        self.tree.validate()  # fail now, naming the path, on a bad .drive.json or shortcut
        self.drive_id = drive_id
        self.api = DriveApi(self.tree, DriveSettings(drive_id, page_size_cap))
        self.changes_api = ChangesApi(self.api)
        self.exporter = Exporter()
        self.faults = FaultInjector(faults or FaultConfig())
        self.stats = EmulatorStats()
        self.export_limit_bytes = export_limit_bytes
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.tokens = frozenset(tokens) if tokens is not None else None
        # Notification channels (changes.watch): every change the tree's log appends is
        # delivered to each open channel; `clock` decides expiry. While a channel is open the
        # disk is looked at every `watch_poll_interval` seconds (None: only on requests and
        # poll_changes()), so an edit on disk is notified without any request.
        self.watch = WatchApi(clock=clock)
        self.tree.changes.listeners.append(self.watch.on_changes)
        self.watch_poll_interval = watch_poll_interval
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._address = (host, port)
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> DriveEmulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._server = EmulatorServer(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="drive-emulator",
            daemon=True,
        )
        self._thread.start()
        if self.watch_poll_interval:
            self._poll_stop.clear()
            self._poller = threading.Thread(
                target=self._poll, name="drive-emulator-poll", daemon=True
            )
            self._poller.start()
        return self

    def _poll(self) -> None:
        interval = self.watch_poll_interval or 0.2
        while not self._poll_stop.wait(interval):
            if self.watch.open_channels():
                try:
                    self.tree.refresh()
                except (OSError, TreeError):
                    continue  # a half-written tree: look again next time

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._poll_stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
            self._poller = None
        self.watch.close()
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> DriveEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- addresses and ids ----------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._server is None:
            raise RuntimeError("emulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL clients use, e.g. http://127.0.0.1:PORT/drive/v3 (DRIVE_API_URL)."""
        host = self._address[0]
        return f"http://{host}:{self.port}/drive/v3"

    @property
    def root_id(self) -> str:
        """Id of the root folder."""
        return self.tree.root_id

    def id_for(self, relpath: str) -> str:
        """Current id of the entry at an on-disk path relative to the root ("" for the root).

        A file moved or renamed on disk keeps its id, so after `os.rename(a, b)`
        `id_for(b)` is what `id_for(a)` was.
        """
        entry = self.tree.entry_at(relpath.replace("\\", "/"))
        if entry is None:
            raise KeyError(f"no entry at {relpath!r} under {self.tree.root}")
        return entry.id

    # ---- changes feed ---------------------------------------------------------------------
    def start_page_token(self) -> str:
        """The changes token for "now" (what changes.getStartPageToken would answer)."""
        self.tree.refresh()
        return self.tree.changes.start_token()

    def poll_changes(self) -> int:
        """Look at the disk now: log what changed and notify open channels; returns how many."""
        return self.tree.refresh()

    def expire_tokens(self) -> str:
        """Invalidate every changes token issued so far (changes.list then answers 400
        `invalid` on `pageToken`); returns the new, valid start token."""
        self.tree.refresh()  # what changed before the expiry is part of the lost history
        return self.tree.changes.expire()

    # ---- faults and stats -----------------------------------------------------------------
    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault configuration (takes effect on the next request)."""
        self.faults.configure(faults)

    def reset_stats(self) -> None:
        """Zero all counters."""
        self.stats.reset()


__all__ = ["DEFAULT_EXPORT_LIMIT", "DriveEmulator", "TreeError"]
