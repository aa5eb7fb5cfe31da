"""The dataset home: find a known dataset under AE_DATA_DIR, or fetch it from its official source.

`registry.json` beside this file lists each dataset's official URL(s), licence, format and the MD5
of every file we read. `ensure_dataset` returns the folder when the files are there; otherwise it
downloads (only when asked), verifies every checksum and moves the files into place atomically,
or says exactly what to download and where to put it.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.jobs.hashing import file_digest

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).with_name("registry.json")
ENV_VAR = "AE_DATA_DIR"


@lru_cache(maxsize=1)
def registry() -> dict[str, Any]:
    return json.loads(REGISTRY_PATH.read_text())["datasets"]


def data_dir() -> Path:
    """AE_DATA_DIR when set, else the project's own data/ folder (downloads there are gitignored)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path(__file__).resolve().parent


def _entry(name: str) -> dict[str, Any]:
    try:
        return registry()[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(registry())}") from None


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

    Returns the files written. Nothing is written under `root` unless every checksum matched.
    """
    root = root or data_dir()
    entry = _entry(name)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{name}-", dir=root) as tmp_name:
        tmp = Path(tmp_name)
        for i, source in enumerate(entry["sources"]):
            download_to = tmp / f"source{i}"
            _download(source["url"], download_to, timeout)
            if source["kind"] == "zip":
                _extract(download_to, source, tmp / "staged")
            else:
                target = tmp / "staged" / source["dest"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(download_to), target)
        written = []
        for rel, md5 in entry["files"].items():
            staged = tmp / "staged" / rel
            if not staged.is_file():
                raise UserError(f"download of {name} did not contain {rel}")
            if md5 is not None and file_digest(staged, "md5") != md5:
                raise UserError(f"checksum mismatch for {rel} in the {name} download; nothing was written")
        for rel in entry["files"]:
            final = root / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / "staged" / rel, final)
            written.append(rel)
    log.info("fetched %s: %d files into %s", name, len(written), root)
    return written


def _download(url: str, path: Path, timeout: float) -> None:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(path, "wb") as fh:
            shutil.copyfileobj(resp, fh, length=1 << 20)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise UserError(f"cannot download {url} ({exc}); are you offline? Download it by hand and put it under "
                        f"{data_dir()}, or set {ENV_VAR}") from None


def _extract(archive: Path, source: dict[str, Any], staged: Path) -> None:
    strip, dest = source.get("strip", ""), source["dest"]
    members = source.get("members")
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                name = info.filename
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
                if ".." in Path(rel).parts:
                    raise UserError(f"refusing archive member with '..' in its path: {name}")
                target = staged / dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
    except zipfile.BadZipFile:
        raise UserError(f"the download from {source['url']} is not a valid zip archive") from None
