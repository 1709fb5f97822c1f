"""Reading a file under a corpus root: through no symbolic link, never outside the root, never past a
size limit; and the one way a corpus path becomes text (a name need not be valid UTF-8)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from slm.errors import DocumentError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO planted in the corpus must not hang the run
# Where open() takes a parent folder's descriptor, each step of a path is opened relative to the one
# before with O_NOFOLLOW, so a folder swapped for a link between discovery and reading is refused too.
_RELATIVE_OPEN = bool(_NOFOLLOW) and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd
_READ_CHUNK = 1 << 20

LINK_REFUSED = (
    "a symbolic link: ingestion never follows links (copy the file into the folder, "
    "or ingest the folder the link points to)"
)


def display_path(rel: str) -> str:
    """`rel` as printable, storable text: bytes of a name that is not UTF-8 show as `\\xNN`."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        pass
    try:  # the undecodable bytes of a file name arrive as surrogate escapes (PEP 383)
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return rel.encode("utf-8", "backslashreplace").decode("utf-8")


def check_name(rel: str) -> None:
    """Refuse a path that is not valid UTF-8: SQLite, the run log and JSON answers all need text."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentError(
            "the file name is not valid UTF-8: rename it (for example with `convmv -f latin1 -t utf8`)"
        ) from None


def read_under(root: Path, rel: str, *, max_bytes: int, missing_ok: bool = False) -> bytes | None:
    """The bytes of the regular file `rel` (a relative POSIX path) under `root`, read without following
    a symbolic link anywhere below `root`. None when it does not exist and `missing_ok`.

    Raises DocumentError for a link, a FIFO/device/folder, a file over `max_bytes`; OSError otherwise."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise DocumentError(f"{display_path(rel)} is not inside the corpus root {display_path(str(root))}")
    try:
        fd = _open_beneath(Path(root), parts)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError("cannot read: not a regular file (a folder, FIFO or device)")
        _check_size(info.st_size, max_bytes)
        data = _read_at_most(fd, max_bytes + 1)
    finally:
        os.close(fd)
    _check_size(len(data), max_bytes)  # it grew between the stat and the read
    return data


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DocumentError(f"too large: {size / 1e6:.1f} MB > limit {max_bytes / 1e6:.1f} MB (ingest.max_file_mb)")


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    left = limit
    while left > 0:
        block = os.read(fd, min(_READ_CHUNK, left))
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def _open_beneath(root: Path, parts: tuple[str, ...]) -> int:
    if not _RELATIVE_OPEN:
        return _open_checked(root, parts)
    dir_fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)  # the root itself was chosen by the operator
    try:
        for part in parts[:-1]:
            inner = _open_at(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd)
            os.close(dir_fd)
            dir_fd = inner
        return _open_at(parts[-1], os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd)
    finally:
        os.close(dir_fd)


def _open_at(name: str, flags: int, dir_fd: int) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        # Linux says ELOOP for a link opened with O_NOFOLLOW, FreeBSD EMLINK; ENOTDIR is a link to a file
        # where a folder was expected. Look before naming it, so other errors keep their own message.
        if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR) and _is_link(name, dir_fd):
            raise DocumentError(LINK_REFUSED) from None
        raise


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_checked(root: Path, parts: tuple[str, ...]) -> int:
    """Without descriptor-relative opens (Windows): look at each step, then open. A link swapped in
    between the look and the open is not caught here; on Linux and macOS the path above is used."""
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise DocumentError(LINK_REFUSED)
    return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
