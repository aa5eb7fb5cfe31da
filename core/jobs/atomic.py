"""Atomic writes: a file or directory appears complete under its final name, or not at all.

Files. Everything is written to a temporary sibling (same filesystem, so `os.replace` is atomic)
and renamed only once writing succeeded; on any exception the temporary is removed.

Directories. `atomic_dir(NAME)` writes into a temporary sibling, renames it to a versioned sibling
`.NAME.<tag>.v` and makes NAME a *relative* symlink to it; the link is swapped with `os.replace`
of a temporary link onto NAME, so a reader opening `NAME/config.json` always sees one complete
version, old or new, never a gap (the previous version is removed after the swap; a reader that
resolved the link just before may find its files gone and should re-resolve, as core.artifact
does). The link is relative, so the folder holding NAME and its `.NAME.*.v` sibling can be moved
together. When NAME is still a real directory (written by an older version of this module) it is
renamed away once and replaced by the link: that single upgrade has the old, unavoidable gap.

Stale temporaries. Every temporary this module creates is named `.NAME.<host>-<pid>.<random>`
plus `.tmp` (files, directories, links), `.old` (a directory being replaced) or `.v` (a version).
After each successful write to NAME, that name's own leftovers are removed (`clean_stale`): an
entry is stale when it was created on this host by a process that no longer runs, or, when its
creator cannot be checked (another host, or a name written by an older version of this module,
`.NAME.<8 chars>.tmp`), when it has not been modified for `STALE_AGE` seconds. A temporary of a
live writer on this host is never touched, and a `.v` folder is never removed while NAME points
at it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

STALE_AGE = 24 * 3600  # seconds; only for temporaries whose creator cannot be checked
VERSION_SUFFIX = ".v"


def _check_parent(path: Path) -> None:
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        from core.errors import UserError

        raise UserError(f"cannot write {path}: {parent} is not a directory")
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        from core.errors import UserError

        raise UserError(f"cannot write {path}: {parent} is not writable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------ temp names
def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _prefix(name: str) -> str:
    """The start of every temporary this process creates for `name`: `.NAME.<host>-<pid>.`."""
    return f".{name}.{_host_tag()}-{os.getpid()}."


# what follows `.NAME.`: our own names (host tag + pid) or the old mkstemp/mkdtemp ones (8 chars)
_OURS = re.compile(r"^(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[A-Za-z0-9_]{8,}\.(?P<kind>tmp|old|v)$")
_LEGACY = re.compile(r"^[a-z0-9_]{8}\.(?P<kind>tmp|old)$")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # cannot tell: treat as live
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _is_stale(entry: Path, rest: str, now: float) -> bool:
    m = _OURS.match(rest)
    if m is not None:
        if m["host"] == _host_tag():
            return not _pid_alive(int(m["pid"]))
    elif _LEGACY.match(rest) is None:
        return False  # not a name this module creates for NAME
    try:
        return now - entry.lstat().st_mtime > STALE_AGE
    except OSError:
        return False


def _remove(entry: Path) -> None:
    if entry.is_symlink() or not entry.is_dir():
        entry.unlink(missing_ok=True)
    else:
        shutil.rmtree(entry, ignore_errors=True)


def clean_stale(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the stale temporaries of `path` left by killed writers (see the module docstring);
    return what was removed. Never raises: cleaning is best effort."""
    final = Path(path)
    head = f".{final.name}."
    removed: list[Path] = []
    try:
        current = os.readlink(final) if final.is_symlink() else None
        entries = [e for e in os.scandir(final.parent) if e.name.startswith(head)]
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        rest = entry.name[len(head):]
        if entry.name == current:
            continue
        try:
            if _is_stale(Path(entry.path), rest, now):
                _remove(Path(entry.path))
                removed.append(Path(entry.path))
        except OSError:
            continue
    if removed:
        log.info("removed %d stale temporar%s of %s", len(removed), "y" if len(removed) == 1 else "ies", final)
    return removed


# ------------------------------------------------------------------------------------------ files
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; rename it onto `path` when the block succeeds."""
    final = Path(path)
    _check_parent(final)
    fd, tmp_name = tempfile.mkstemp(prefix=_prefix(final.name), suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    clean_stale(final)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------ directories
def _own_version(final: Path) -> Path | None:
    """The `.NAME.*.v` sibling that the link `final` points at, or None (no link, or a foreign one)."""
    if not final.is_symlink():
        return None
    target = os.readlink(final)
    if os.sep in target or not (target.startswith(f".{final.name}.") and target.endswith(VERSION_SUFFIX)):
        return None
    return final.parent / target


def _temp_link(final: Path, target: str) -> Path:
    while True:
        link = final.parent / f"{_prefix(final.name)}{secrets.token_hex(6)}.tmp"
        try:
            os.symlink(target, link)
            return link
        except FileExistsError:
            continue


def _point(final: Path, version: Path) -> None:
    """Make `final` a relative link to the sibling `version`, atomically for readers when `final`
    is absent or already a link; a real directory (old layout) is renamed away first."""
    link = _temp_link(final, version.name)
    old_dir: Path | None = None
    try:
        if final.is_dir() and not final.is_symlink():
            old_dir = Path(tempfile.mkdtemp(prefix=_prefix(final.name), suffix=".old", dir=final.parent))
            old_dir.rmdir()
            os.replace(final, old_dir)
        os.replace(link, final)
    except BaseException:
        link.unlink(missing_ok=True)
        if old_dir is not None and old_dir.exists() and not os.path.lexists(final):
            os.replace(old_dir, final)
        raise
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success `path` becomes a link to it (see the module docstring),
    swapped in one `os.replace`; the previous version is removed only after the swap."""
    final = Path(path)
    if final.exists() and not final.is_dir():
        from core.errors import UserError

        raise UserError(f"cannot write directory {final}: a file with that name exists")
    _check_parent(final)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(final.name), suffix=".tmp", dir=final.parent))
    version = tmp.with_name(tmp.name[: -len(".tmp")] + VERSION_SUFFIX)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, version)
        previous = _own_version(final)
        _point(final, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if version.exists() and _own_version(final) != version:
            shutil.rmtree(version, ignore_errors=True)
        raise
    if previous is not None and previous != version:
        shutil.rmtree(previous, ignore_errors=True)
    clean_stale(final)
