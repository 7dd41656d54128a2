"""Errors from the operating system, as the one line a user can act on.

A command's own checks raise :class:`~emda.errors.EmdaError` naming the file or option;
what they cannot foresee (a disk filling up, a path that became a directory, memory
running out) arrives as an ``OSError`` or ``MemoryError`` and is worded here.
"""

from __future__ import annotations

import errno

from emda.errors import EmdaError

_WORDS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EACCES: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "no such file or directory",
    errno.EIO: "input/output error (a failing disk or network file system?)",
}


def as_user_error(exc: BaseException) -> EmdaError | None:
    """The one-line error for ``exc``, or None when it is a bug rather than a condition."""
    if isinstance(exc, EmdaError):
        return exc
    if isinstance(exc, OSError):
        what = _WORDS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__
        where = exc.filename if exc.filename is not None else None
        return EmdaError(f"{where}: {what}" if where else what)
    if isinstance(exc, MemoryError):
        return EmdaError("out of memory: use smaller --block-size / --batch-size, or a "
                         "machine with more memory")  # fmt: skip
    if isinstance(exc, UnicodeDecodeError):
        return EmdaError(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    return None


def internal_error(exc: BaseException) -> str:
    """The line for an unforeseen failure: what it was, and how to report it."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return (f"internal error ({type(exc).__name__}: {first}); rerun with EMDA_DEBUG=1 for the "
            "traceback and report it")  # fmt: skip
