"""The token file ``livetok record`` writes, under the rules of the daemon's file sink
(livetok/sinks/file.py), so that neither ever destroys a file:

* **a new file** is made through a temporary file beside it (``.NAME.XXXXXXXX.tmp.ltk``, the file
  header in it), which takes the name at the first record, never over a file that appeared
  meanwhile. Nothing received (a dead broker, a typo in the URL, no message before the end): no
  file is left, the temporary one is removed;
* **an existing** ``.ltk`` whose header and last record check out (:func:`livetok.wire.ltkfile.check_append`,
  as the sink checks) is appended to; nothing received: it is left byte for byte as it was;
* **anything else** is refused before connecting (:class:`~livetok.errors.OutputError`, exit 73):
  not a regular file, not a token file (an ``.mp4``), a token file of another version or whose last
  record is damaged (the daemon moves such a file aside and starts anew, since nobody is there to
  ask; a person running ``record`` chooses), a file another daemon or recording holds (the same
  advisory lock as the sink's).

A write that fails (a full disk) is undone, the file cut back to its last whole record, and stops
the recording with one line. Records go to the file as they come (one ``write`` each): a recording
killed at any moment keeps all but at most its last record.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from types import TracebackType

from livetok.errors import OutputError
from livetok.outputs import describe_oserror, open_temp, prepare
from livetok.outputs.interrupts import held
from livetok.wire.ltkfile import FILE_HEADER, check_append, frame_record, lock, open_locked, write_all

NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK)


class RecordFile:
    """``with RecordFile(path) as f: f.write(payload) ...``: checked and opened on entry (before the
    bus is touched), closed on exit; see the module doc. ``records``: how many were written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self.appending = False  # to a file that was there before
        self._target = path
        self._fd: int | None = None
        self._tmp: Path | None = None  # the temporary file, until it takes the name
        self._size = 0  # where the last whole record ends
        self._header_due = False  # an empty existing file: the header goes with the first record

    def __enter__(self) -> RecordFile:
        target, st = prepare(self.path)  # a symlink's file, a missing directory, a directory in the way
        self._target = target
        if st is None:
            self._create(target)
        elif not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{self.path}: not a regular file; refusing to write into it (record writes .ltk files)")
        else:
            self._adopt(target)
        return self

    def _create(self, target: Path) -> None:
        with held():  # the temporary file is known (and removed on the way out) from its first moment
            self._tmp, self._fd = open_temp(self.path, target)
        try:
            lock(self._fd)
            write_all(self._fd, FILE_HEADER)
        except OSError as err:
            self._discard()
            raise OutputError(f"{self.path}: cannot create it: {describe_oserror(err)}") from None
        self._size = len(FILE_HEADER)

    def _adopt(self, target: Path) -> None:
        try:
            fd = open_locked(target, os.O_RDWR | os.O_APPEND)
        except BlockingIOError:
            raise OutputError(f"{self.path}: in use by another process (a daemon's file sink or a recording "
                              "holds its lock); refusing to write into it") from None
        except OSError as err:
            raise OutputError(f"{self.path}: cannot open it to append: {describe_oserror(err)}") from None
        try:
            found = check_append(fd)
        except BaseException:
            os.close(fd)
            raise
        if found.problem:
            os.close(fd)
            raise OutputError(f"{self.path}: cannot append to it: {found.problem}; refusing to write into it "
                              "(record appends only to a whole .ltk token file)")
        self._fd, self._size, self._header_due, self.appending = fd, found.size, found.size == 0, True

    def write(self, data: bytes) -> None:
        """Append one record holding the encoded packet ``data`` (OutputError when it cannot be)."""
        assert self._fd is not None, "use RecordFile in a with block"
        record = (FILE_HEADER if self._header_due else b"") + frame_record(data)
        try:
            write_all(self._fd, record)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)  # undo a partial record: the file stays whole
            raise OutputError(f"{self.path}: cannot write it: {describe_oserror(err)}") from None
        self._size += len(record)
        self._header_due = False
        self.records += 1
        if self._tmp is not None:
            self._place(self._tmp)

    def _place(self, tmp: Path) -> None:
        """The temporary file takes its name, unless something took the name meanwhile."""
        with held():
            try:
                os.link(tmp, self._target)
            except FileExistsError:
                raise OutputError(f"{self.path}: was created by another program while recording; "
                                  "refusing to write over it") from None
            except OSError as err:
                if err.errno not in NO_HARD_LINKS:
                    raise OutputError(f"{self.path}: cannot create it: {describe_oserror(err)}") from None
                if self._target.exists():  # a file system without hard links: the same check, then a rename
                    raise OutputError(f"{self.path}: was created by another program while recording; "
                                      "refusing to write over it") from None
                os.rename(tmp, self._target)
            else:
                os.unlink(tmp)
            self._tmp = None

    def _discard(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Nothing received: no new file, an existing one untouched. Else the records are synced."""
        if self._fd is not None and self._tmp is None and self.records:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
        self._discard()  # the temporary file is still there only when nothing was received
