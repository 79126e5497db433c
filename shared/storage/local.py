"""Local-directory backend: files under a root directory, written atomically via temp + rename.

A writer killed between the temp file and the rename leaves a ``.drivepipe-tmp-*`` file behind.
Such files older than ``temp_max_age`` (by mtime) are removed from a directory the first time
this storage writes there, and from the whole tree by :meth:`LocalStorage.cleanup_temp`; a
concurrent writer's temp file is younger than that (every write refreshes its mtime).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from shared.crashpoints import crash_point
from shared.errors import StorageError, StorageNotFound
from shared.storage.base import ObjectInfo, check_key, check_list_args, check_prefix

# Temp files live next to their final file (same filesystem, so os.replace is atomic) and are
# hidden from list(); keys may not use this prefix for a file name.
TEMP_PREFIX = ".drivepipe-tmp-"
COPY_CHUNK = 1024 * 1024
TEMP_MAX_AGE = 3600.0  # seconds: a temp file untouched this long belongs to a dead writer


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


class LocalStorage:
    """A ``Storage`` rooted at a local directory (created on first write)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        temp_max_age: float = TEMP_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        self.base_url = self.root.as_uri()
        self.temp_max_age = temp_max_age
        self._clock = clock
        self._swept: set[Path] = set()  # directories already cleared of stale temp files
        self._swept_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # -- helpers -----------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
            raise StorageError(f"storage key {key!r} uses the reserved prefix {TEMP_PREFIX!r}")
        return self.root.joinpath(*key.split("/"))

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
            updated=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        )

    def _error(self, action: str, key: str, exc: OSError) -> StorageError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return StorageError(f"cannot {action} {self.url(key)}: {reason}")

    def _remove_stale_temp(self, directory: str | os.PathLike[str], names: list[str]) -> int:
        """Delete the temp files among ``names`` in ``directory`` older than ``temp_max_age``."""
        cutoff = self._clock() - self.temp_max_age
        removed = 0
        for name in names:
            if not name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):  # renamed or removed meanwhile: not stale
                st = os.lstat(path)
                if st.st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
        return removed

    def _sweep_once(self, directory: Path) -> None:
        """Remove stale temp files from ``directory`` the first time this storage writes there."""
        with self._swept_lock:
            if directory in self._swept:
                return
            self._swept.add(directory)
        with contextlib.suppress(OSError):
            self._remove_stale_temp(directory, os.listdir(directory))

    def cleanup_temp(self) -> int:
        """Remove every temp file under the root older than ``temp_max_age``; return the count."""
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            removed += self._remove_stale_temp(dirpath, filenames)
        return removed

    def _write_temp(self, key: str, path: Path, data: bytes | BinaryIO) -> str:
        """Write ``data`` to a fsynced temp file beside ``path``; return the temp path."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._sweep_once(path.parent)
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
        except OSError as exc:
            raise self._error("write", key, exc) from exc
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                else:
                    while chunk := data.read(COPY_CHUNK):
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, _FILE_MODE)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise self._error("write", key, exc) from exc
            raise
        return tmp

    def _fsync_dir(self, directory: Path) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- contract ----------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        """Return the file's bytes; ``StorageNotFound`` if absent."""
        with self.open_read(key) as stream:
            return stream.read()

    def open_read(self, key: str) -> BinaryIO:
        """Open the file for reading; ``StorageNotFound`` if absent."""
        path = self._path(key)
        try:
            return open(path, "rb")  # the caller owns (and closes) the stream
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise StorageNotFound(f"no object at {self.url(key)}") from exc
        except OSError as exc:
            raise self._error("read", key, exc) from exc

    def write(
        self, key: str, data: bytes | BinaryIO, *, content_type: str | None = None
    ) -> ObjectInfo:
        """Write to a temp file in the same directory, fsync, then ``os.replace`` it into place.

        ``content_type`` is accepted for contract compatibility; a plain file cannot keep it.
        """
        path = self._path(key)
        tmp = self._write_temp(key, path, data)
        if not isinstance(data, bytes | bytearray | memoryview):
            crash_point("mid_write")  # fault-injection tests: a streamed write's temp file
        try:
            os.replace(tmp, path)
            st = path.stat()
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._error("write", key, exc) from exc
        self._fsync_dir(path.parent)
        return self._info(key, st)

    def create_if_absent(self, key: str, data: bytes) -> bool:
        """Hard-link a complete temp file to the key; the link fails if the key exists."""
        path = self._path(key)
        tmp = self._write_temp(key, path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._error("create", key, exc) from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._fsync_dir(path.parent)
        return True

    def stat(self, key: str) -> ObjectInfo | None:
        """Return the file's info, or None if there is no file at the key."""
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error("stat", key, exc) from exc
        if not path.is_file():
            return None
        return self._info(key, st)

    def exists(self, key: str) -> bool:
        """True if a file exists at the key."""
        return self.stat(key) is not None

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """Yield files whose key starts with ``prefix`` (string prefix, like S3), sorted;
        only keys after ``start_after``, at most ``limit`` of them."""
        check_prefix(prefix)
        check_list_args(start_after, limit)
        start_dir = self.root
        if "/" in prefix:
            start_dir = self.root.joinpath(*prefix.rsplit("/", 1)[0].split("/"))
        found: list[tuple[str, os.stat_result]] = []
        for dirpath, dirnames, filenames in os.walk(start_dir):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(TEMP_PREFIX):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix) or (start_after is not None and key <= start_after):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted while we walked
                    continue
                found.append((key, st))
        found.sort(key=lambda item: item[0])
        for key, st in found[:limit]:
            yield self._info(key, st)

    def delete(self, key: str) -> None:
        """Remove the file (absent is fine) and prune directories left empty."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._error("delete", key, exc) from exc
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def url(self, key: str) -> str:
        """``file://`` URL of the key (percent-encoded)."""
        return self.root.joinpath(*check_key(key).split("/")).as_uri()
