"""One writer per output: a second command writing the same output is refused.

A lock is a hidden file beside the output (``.out.tif.emda-lock``), held with an
exclusive ``flock`` for as long as the command writes. The kernel drops the lock when
its process ends, however it ends (SIGKILL included), so a lock is never stale: a file
left by a killed process is simply taken over. The file records who holds it, so the
refused command can say which process to wait for.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from emda.errors import EmdaError
from emda.io.volume import split_address

try:
    import fcntl
except ImportError:  # Windows: no flock; emda's locks are POSIX (Linux, macOS)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("emda")

LOCK_SUFFIX = ".emda-lock"

_held: dict[Path, int] = {}  # lock files this process holds -> how many times (re-entrant)


def lock_path(address: str | os.PathLike) -> Path:
    """Where the lock of an output or run directory lives: beside its store, so that it
    can be taken before the output exists (``g.zarr/prob`` -> ``.g.zarr.prob.emda-lock``)."""
    store, key = split_address(address)
    store = Path(os.path.realpath(store))
    name = store.name + ("." + key.strip("/").replace("/", ".") if key else "")
    return store.parent / f".{name}{LOCK_SUFFIX}"


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another emda process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on {info.get('host')} (`{info.get('command')}`, since {since})"


def _acquire(path: Path, option: str, address) -> int:
    name = f"{option} {address}" if option else str(address)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EmdaError(f"{name}: cannot lock it ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise EmdaError(
                f"{name}: is being written by {holder}; wait for it to finish or stop it"
            ) from None
        try:  # a holder releasing at this moment unlinks the file we opened: open anew
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    command = " ".join(["emda", *sys.argv[1:]])
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
              "command": command[:120]}  # fmt: skip
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return fd


@contextmanager
def output_lock(address: str | os.PathLike, option: str = "") -> Iterator[Path]:
    """Hold the lock of ``address`` (an output volume or a run directory) for the block;
    raise a one-line :class:`EmdaError` naming the holder when another process has it."""
    path = lock_path(address)
    if fcntl is None:
        log.warning("no file locks on this system: nothing stops a second command writing %s",
                    address)  # fmt: skip
        yield path
        return
    if path in _held:  # this process already writes it (a command calling another)
        _held[path] += 1
        try:
            yield path
        finally:
            _held[path] -= 1
        return
    fd = _acquire(path, option, address)
    _held[path] = 1
    try:
        yield path
    finally:
        del _held[path]
        with suppress(OSError):  # unlink before unlocking: a waiting process retries afresh
            path.unlink()
        os.close(fd)


@contextmanager
def output_locks(outputs: dict[str, str | os.PathLike | None]) -> Iterator[None]:
    """:func:`output_lock` for every given output (``{"--output": path, "--mask": None}``)."""
    with ExitStack() as stack:
        for option, address in outputs.items():
            if address is not None:
                stack.enter_context(output_lock(address, option))
        yield
