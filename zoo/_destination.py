"""Where ``zoo convert`` writes: one conversion at a time, its leftovers cleaned, folders replaced safely.

Beside a destination ``DST`` in its folder live, at most:

- ``.DST.lock``: the lock a conversion holds while it writes ``DST``
  (``flock``, which the kernel drops when its process dies, even by
  ``kill -9``); it holds the writer's pid and host, so a refused second
  conversion can say who is writing;
- ``.DST.PID.XXXXXXXX.partial``: a conversion's temporary folder, named
  with the pid of the process that owns it (a killed run leaves it behind);
- ``.DST.replaced``: the folder ``--force`` replaces, moved aside until the
  new one is in place (a run killed in between leaves it, and no ``DST``).

A conversion that holds the lock first removes the temporary folders of dead
processes and puts a ``.replaced`` folder back where the run that left it
was killed, logging one line for each.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ._errors import WeightsError

__all__ = ["locked", "replace_folder", "temporary_folder"]

log = logging.getLogger("zoo")

_RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths in one step


def _lock_path(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.lock"


def _replaced_path(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.replaced"


@contextlib.contextmanager
def locked(dst: Path) -> Iterator[None]:
    """Hold the lock on ``dst`` for a conversion; a second one fails at once with :class:`WeightsError`.

    On entry, the leftovers of killed conversions to ``dst`` are cleaned
    (:func:`_recover`): no live conversion can be writing it.
    """
    import fcntl

    path = _lock_path(dst)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WeightsError(
                f"cannot write in {str(dst.parent)!r} ({exc.strerror or exc}): the lock file {path.name!r} "
                "cannot be made there; write to a folder you can write to"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise WeightsError(
                f"another conversion ({owner}) is writing {str(dst)!r}; wait for it to finish, or stop it, "
                "then run again (or write elsewhere)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the lock file may have been removed by its last holder between our open and our flock
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        _recover(dst)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting opener sees another file and tries again
        os.close(fd)


def temporary_folder(dst: Path) -> Path:
    """A new temporary folder beside ``dst``, named with this process's pid."""
    return Path(tempfile.mkdtemp(prefix=f".{dst.name}.{os.getpid()}.", suffix=".partial", dir=dst.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _recover(dst: Path) -> None:
    """Remove the temporary folders of dead conversions to ``dst``; undo a folder replacement cut short."""
    leftover = re.compile(rf"\.{re.escape(dst.name)}\.(\d+)\.[A-Za-z0-9_]+\.partial\Z")
    for entry in sorted(dst.parent.iterdir()):
        found = leftover.match(entry.name)
        if found is None:
            continue
        pid = int(found.group(1))
        if pid != os.getpid() and _alive(pid):  # under the lock, no conversion of ours is writing it
            log.warning("left %s alone: process %d, which made it, is running; remove it once it is not",
                        entry, pid)
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if entry.exists():
            log.warning("could not remove %s, left by a conversion (pid %d) that was killed; "
                        "delete it by hand", entry, pid)
        else:
            log.warning("removed %s, left by a conversion (pid %d) that was killed", entry, pid)
    replaced = _replaced_path(dst)
    if not (replaced.exists() or replaced.is_symlink()):
        return
    if dst.exists() or dst.is_symlink():  # the new folder is in place: the old one was not deleted yet
        shutil.rmtree(replaced, ignore_errors=True)
        if replaced.exists():
            log.warning("could not remove %s, the folder a killed conversion replaced; delete it by hand",
                        replaced)
        else:
            log.warning("removed %s, the folder a killed conversion had replaced with %s", replaced, dst)
        return
    replaced.rename(dst)
    log.warning("restored %s from %s: a conversion was killed while replacing it", dst, replaced)


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one step (Linux's ``renameat2(RENAME_EXCHANGE)``); ``False`` if unsupported."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc 2.28+ (or not Linux)
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):  # a file system without it
        return False
    raise OSError(code, os.strerror(code), str(b))


def _move_into_place(new: Path, dst: Path) -> None:
    new.rename(dst)


def replace_folder(new: Path, dst: Path) -> None:
    """Put the folder ``new`` at the existing folder ``dst``; ``dst`` is never missing once this returns.

    Atomic where the system can swap two paths (the old folder ends up at
    ``new``, inside the temporary folder that is deleted next). Elsewhere the
    old folder is moved to ``.DST.replaced`` first; a run killed before the
    new one is in place leaves it there, and the next conversion to ``dst``
    puts it back (:func:`_recover`).
    """
    if _exchange(new, dst):
        return
    replaced = _replaced_path(dst)
    dst.rename(replaced)
    try:
        _move_into_place(new, dst)
    except OSError:
        replaced.rename(dst)
        raise
    shutil.rmtree(replaced, ignore_errors=True)
    if replaced.exists():
        log.warning("could not remove %s, the folder %s replaced; delete it by hand", replaced, dst)
