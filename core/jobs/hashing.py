"""File digests, the one helper behind model-weight checksums, input fingerprints and dataset checks."""

from __future__ import annotations

import hashlib
import os


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (memory stays flat for any size).

    MD5 is accepted only because published dataset checksums use it; it is never used for security."""
    h = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
