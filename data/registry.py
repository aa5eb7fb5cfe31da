"""The dataset home: find a known dataset under AE_DATA_DIR, or fetch it from its official source.

`registry.json` beside this file lists each dataset's official URL(s), licence, format and the MD5
of every file we read. `ensure_dataset` returns the folder when the files are there; otherwise it
downloads (only when asked), verifies every checksum and moves the files into place atomically,
or says exactly what to download and where to put it.

Unpacking only ever writes inside a private staging folder under the data root: every archive
member's name is checked (no absolute paths, no `..`, no drive letters or backslashes, no empty
path components after stripping the archive's top folder) and its resolved target must lie inside
the staging folder; symlinks and other special members are refused; declared and actual sizes are
bounded. Only after every expected file is present and matches its MD5 are the files moved into
place. Sources may be any URL urllib opens, `file://` included.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import UnavailableError, UserError
from core.jobs.hashing import file_digest

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).with_name("registry.json")
ENV_VAR = "AE_DATA_DIR"


# bounds on what one fetch may write (a zip bomb or a runaway download stops with a clear error)
MAX_DOWNLOAD_BYTES = 8 << 30
MAX_EXTRACT_BYTES = 16 << 30

_DRIVE = re.compile(r"^[A-Za-z]:")


def registry() -> dict[str, Any]:
    """The datasets of the registry file at REGISTRY_PATH (a module attribute, so tests can point it
    at a registry of their own)."""
    path = Path(REGISTRY_PATH)
    st = path.stat()
    return _load_registry(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _load_registry(path: str, _mtime_ns: int, _size: int) -> dict[str, Any]:
    return json.loads(Path(path).read_text())["datasets"]


def data_dir() -> Path:
    """AE_DATA_DIR when set, else the project's own data/ folder (downloads there are gitignored)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent


def _entry(name: str) -> dict[str, Any]:
    """The registry entry of `name`, after checking that its paths stay inside the data root."""
    try:
        entry = registry()[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(registry())}") from None
    for rel in entry["files"]:
        _check_relative(rel, f"registry file name of {name}")
    for source in entry["sources"]:
        _check_relative(source["dest"], f"destination of a {name} source")
    return entry


def missing_files(name: str, root: Path | None = None) -> list[str]:
    root = root or data_dir()
    return [rel for rel in _entry(name)["files"] if not (root / rel).is_file()]


def verify(name: str, root: Path | None = None) -> list[str]:
    """Relative paths whose MD5 does not match the registry (missing files count as mismatches)."""
    root = root or data_dir()
    bad = []
    for rel, md5 in _entry(name)["files"].items():
        path = root / rel
        if not path.is_file() or (md5 is not None and file_digest(path, "md5") != md5):
            bad.append(rel)
    return bad


def dataset_status(root: Path | None = None) -> dict[str, str]:
    root = root or data_dir()
    out = {}
    for name, entry in registry().items():
        missing = missing_files(name, root)
        out[name] = "present" if not missing else f"missing {len(missing)} of {len(entry['files'])} files"
    return out


def instructions(name: str, root: Path | None = None) -> str:
    root = root or data_dir()
    entry = _entry(name)
    urls = " and ".join(s["url"] for s in entry["sources"])
    missing = missing_files(name, root)
    first = f" (first missing: {missing[0]})" if missing else ""
    return (f"dataset {name} is not under {root}{first}: download {urls}, unpack it so that "
            f"{root / entry['sources'][0]['dest']} holds its files, or set {ENV_VAR} to a folder that has them; "
            f"`ae data fetch {name}` downloads it for you when online")


def ensure_dataset(name: str, download: bool = False, root: Path | None = None) -> Path:
    """The data root holding `name`; download and verify it first when missing and `download` is set."""
    root = root or data_dir()
    if not missing_files(name, root):
        return root
    if not download:
        raise UserError(instructions(name, root))
    fetch(name, root)
    return root


def fetch(name: str, root: Path | None = None, timeout: float = 60.0) -> list[str]:
    """Download every source of `name`, verify the MD5s, then move the files into `root` atomically.

    Returns the files written. Nothing is written under `root` unless every checksum matched, and
    nothing from an archive is ever written outside the private staging folder.
    """
    root = root or data_dir()
    entry = _entry(name)
    files = entry["files"]
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{name}-", dir=root) as tmp_name:
        tmp = Path(tmp_name)
        staged = tmp / "staged"
        staged.mkdir()
        for i, source in enumerate(entry["sources"]):
            download_to = tmp / f"source{i}"
            _download(source["url"], download_to, timeout)
            if source["kind"] == "zip":
                _extract(download_to, source, staged, wanted=set(files))
            elif source["kind"] == "file":
                target = _inside(staged, source["dest"], source["dest"])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(download_to), target)
            else:
                raise UserError(f"unknown source kind {source['kind']!r} for {name} in the registry")
            download_to.unlink(missing_ok=True)  # the archive is no longer needed; free the space
        for rel, md5 in files.items():
            path = _inside(staged, rel, rel)
            if path.is_symlink() or not path.is_file():
                raise UserError(f"download of {name} did not contain {rel}; nothing was written")
            if md5 is not None and file_digest(path, "md5") != md5:
                raise UserError(f"checksum mismatch for {rel} in the {name} download; nothing was written")
        written = []
        for rel in files:
            final = root / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / rel, final)
            written.append(rel)
    log.info("fetched %s: %d files into %s", name, len(written), root)
    return written


def _download(url: str, path: Path, timeout: float) -> None:
    """Copy `url` (http(s), file:// or anything urllib opens) to `path`, at most MAX_DOWNLOAD_BYTES."""
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(path, "wb") as fh:
            total = 0
            while chunk := resp.read(1 << 20):
                total += len(chunk)
                if total > MAX_DOWNLOAD_BYTES:
                    raise UserError(f"the download from {url} is larger than {MAX_DOWNLOAD_BYTES} bytes; refusing it")
                fh.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise UnavailableError(f"cannot download {url} ({exc}); are you offline? Download it by hand and put it under "
                        f"{data_dir()}, or set {ENV_VAR}") from None


def _unsafe(name: str) -> str | None:
    """Why a relative archive or registry path is unsafe to join onto a folder, or None when it is safe."""
    if not name:
        return "it is empty"
    if "\\" in name or "\x00" in name:
        return "it has a backslash or NUL character"
    if name.startswith("/"):
        return "it is absolute"
    if _DRIVE.match(name):
        return "it starts with a drive letter"
    parts = name.split("/")
    if ".." in parts:
        return "it has a '..' component"
    if "" in parts[:-1]:  # `a//b`: an empty component (only a trailing slash is allowed)
        return "it has an empty path component"
    return None


def _escapes(name: str) -> str | None:
    """Why a member name would leave any folder it is joined onto (absolute, drive letter or `..`,
    reading backslashes as separators too), or None. No archive we read has such a member."""
    name = name.replace("\\", "/")
    if name.startswith("/"):
        return "it is absolute"
    if _DRIVE.match(name):
        return "it starts with a drive letter"
    if ".." in name.split("/"):
        return "it has a '..' component"
    return None


def _check_relative(name: str, what: str) -> None:
    reason = _unsafe(name)
    if reason:
        raise UserError(f"refusing {what} {name!r}: {reason}")


def _inside(base: Path, rel: str, shown: str) -> Path:
    """`base / rel`, after checking that the resolved target lies inside `base`."""
    reason = _unsafe(rel)
    target = base / rel
    if reason is None and not target.resolve().is_relative_to(base.resolve()):
        reason = "it resolves outside the staging folder"
    if reason:
        raise UserError(f"refusing archive member {shown!r}: it is unsafe ({reason}); nothing was written")
    return target


def _member_kind(info: zipfile.ZipInfo) -> str:
    """'dir', 'file' or the name of a refused special kind (symlink, device, fifo, socket)."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.is_dir() or kind == stat.S_IFDIR:
        return "dir"
    if kind in (0, stat.S_IFREG):
        return "file"
    return {stat.S_IFLNK: "symlink", stat.S_IFCHR: "device", stat.S_IFBLK: "device", stat.S_IFIFO: "fifo",
            stat.S_IFSOCK: "socket"}.get(kind, "special file")


def _extract(archive: Path, source: dict[str, Any], staged: Path, wanted: set[str] | None = None) -> list[str]:
    """Unpack the selected members of a zip into `staged / dest`; returns the staged relative paths.

    An archive holding an absolute, drive-letter or `..` member anywhere is refused whole. Selected
    members (under `strip` and `members`) must have clean relative names (no backslash, no empty
    component once the top folder is stripped), resolve inside `staged` and be regular files, not
    symlinks or other special files. With `wanted`, only those staged paths are unpacked. All checks
    run, and the declared sizes are bounded, before the first write."""
    strip, dest = source.get("strip", ""), source["dest"]
    members = source.get("members")
    _check_relative(dest, "source destination")
    try:
        with zipfile.ZipFile(archive) as zf:
            plan: list[tuple[zipfile.ZipInfo, Path, str]] = []
            declared = 0
            for info in zf.infolist():
                name = info.filename
                reason = _escapes(name)
                if reason:
                    raise UserError(f"refusing archive {source['url']}: member {name!r} is unsafe ({reason}); "
                                    "nothing was written")
                kind = _member_kind(info)
                if kind == "dir":
                    continue
                parts = name.split("/", 1)
                if strip.endswith("*/"):
                    if len(parts) < 2 or not fnmatch.fnmatch(parts[0] + "/", strip):
                        continue
                    rel = parts[1]
                elif strip:
                    if not name.startswith(strip):
                        continue
                    rel = name[len(strip):]
                else:
                    rel = name
                if members and not any(rel.startswith(m) for m in members):
                    continue
                staged_rel = dest.rstrip("/") + "/" + rel
                target = _inside(staged, staged_rel, name)
                if wanted is not None and staged_rel not in wanted:
                    continue
                if kind != "file":
                    raise UserError(f"refusing archive {source['url']}: member {name!r} is a {kind}; "
                                    "nothing was written")
                declared += info.file_size
                if declared > MAX_EXTRACT_BYTES:
                    raise UserError(f"refusing archive {source['url']}: it unpacks to more than "
                                    f"{MAX_EXTRACT_BYTES} bytes")
                plan.append((info, target, staged_rel))
            for info, target, _ in plan:
                target.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with zf.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > info.file_size:
                            raise UserError(f"refusing archive {source['url']}: member {info.filename!r} "
                                            "unpacks to more than its declared size")
                        out.write(chunk)
                if written != info.file_size:
                    raise UserError(f"archive member {info.filename!r} of {source['url']} is truncated")
            return [rel for _, _, rel in plan]
    except zipfile.BadZipFile:
        raise UserError(f"the download from {source['url']} is not a valid zip archive") from None
    except FileExistsError as exc:
        raise UserError(f"archive {source['url']} holds {exc.filename} twice; refusing it") from None
    except OSError as exc:
        raise UserError(f"cannot unpack {source['url']}: {exc}") from None
