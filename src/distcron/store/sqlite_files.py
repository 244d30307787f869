"""The SQLite store's files on disk: who may read them, whether the file open is
still the one at its path, and the high-water mark kept beside it.

- **Modes.** Job specs hold secrets (``env``, HTTP headers) that the API
  redacts, and the file holds them in clear: its directory is created 0700 and
  the file 0600 (SQLite gives the ``-wal`` and ``-shm`` files the mode of the
  database file). The modes are set with ``fchmod``/``chmod`` after creation,
  not by changing the umask, which is per process and would race with other
  threads. Files that already exist are left as the operator made them, and
  one warning names those readable by others.
- **Identity of the open file.** Removing or replacing the file does not stop
  a process that has it open: SQLite goes on reading and writing the old inode,
  unseen by any process that opens the path later. :class:`FileId` (device and
  inode) is taken when the file is opened and compared at every transaction.
- **High-water mark.** A copy of the file put back holds an older revision; the
  copy cannot tell, so the highest revision written under each store identity
  is kept outside the file, in ``.<name>.highwater`` beside it (a dot file, so
  that ``rm state.db*`` leaves it). A store whose revision is below the mark of
  its own identity was restored from a copy.

On failure: the high-water mark that cannot be written raises ``OSError`` (the
engine reports it as StoreUnavailable, after the commit it follows: the caller
treats the write as possibly applied and does not act on it); one that cannot
be parsed is logged and started afresh (a restore before that is not caught).
Marks survive a process crash (they are written before a commit returns) but
not a power cut: they are not synced, to keep a write at one ``fsync``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SIDE_FILES = ("-wal", "-shm")


class FileId(NamedTuple):
    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileId | None:
        """The file now at ``path``; ``None`` when there is none."""
        try:
            found = path.stat()
        except FileNotFoundError:
            return None
        return cls(found.st_dev, found.st_ino)


def file_problem(path: Path, opened: FileId) -> str | None:
    """Why the file at ``path`` is not the one ``opened`` (removed or replaced), or None."""
    now = FileId.of(path)
    if now == opened:
        return None
    if now is None:
        return "the file was removed while this process had it open"
    return (f"the file was replaced while this process had it open (inode {opened.inode} "
            f"is now {now.inode})")


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with the last part 0700, if missing."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    path.chmod(PRIVATE_DIR)


def create_private_file(path: Path) -> None:
    """Create an empty ``path`` 0600 unless it exists (SQLite takes an empty
    file for a new database)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def too_open(paths: Iterable[Path]) -> list[str]:
    """``path=mode`` for each existing path that group or others may access
    (directories beyond 0700, files beyond 0600)."""
    found = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            found.append(f"{path}={mode:04o}")
    return found


def warn_if_open(what: str, paths: Iterable[Path]) -> None:
    """One warning naming every path of ``what`` (a word) that others may read."""
    wide = too_open(paths)
    if wide:
        log.warning("event=files_readable_by_others of=%s files=%r want=%r", what,
                    " ".join(wide), "directories 0700, files 0600")


def store_paths(path: Path) -> list[Path]:
    """The store's directory, its file and SQLite's files beside it."""
    return [path.parent, path, *(path.with_name(path.name + s) for s in SIDE_FILES)]


class HighWater:
    """The highest revision written under each store identity at one path, in
    a small JSON file beside the store (``{"<identity>": revision}``).

    Every process on the file updates it under ``flock``, after each commit that
    raised the revision. Rewritten in place with one ``pwrite``, padded to its
    old length (JSON allows trailing blanks), so no moment leaves it half
    written to a process that crashes.
    """

    def __init__(self, store_path: Path) -> None:
        self.path = store_path.with_name(f".{store_path.name}.highwater")

    def get(self, identity: str) -> int:
        """The mark of ``identity``, 0 if none."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return self._read(fd).get(identity, 0)
        finally:
            os.close(fd)

    def set(self, identity: str, revision: int, *, lower: bool = False) -> None:
        """Raise the mark of ``identity`` to ``revision`` (or, with ``lower``, set
        it even if lower: after a restore has been recorded)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            marks = self._read(fd)
            if not lower and marks.get(identity, 0) >= revision:
                return
            marks[identity] = revision
            text = json.dumps(marks, sort_keys=True).encode()
            size = os.fstat(fd).st_size
            os.pwrite(fd, text.ljust(size), 0)
        finally:
            os.close(fd)

    def _read(self, fd: int) -> dict[str, int]:
        raw = os.pread(fd, max(os.fstat(fd).st_size, 1), 0)
        if not raw.strip():
            return {}
        try:
            marks = json.loads(raw)
            if not isinstance(marks, dict):
                raise ValueError("not an object")
            return {str(k): int(v) for k, v in marks.items()}
        except (ValueError, TypeError) as exc:
            log.error("event=highwater_unreadable file=%s error=%r action=%r", self.path,
                      str(exc), "started afresh")
            return {}
