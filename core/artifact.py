"""Model directories: `config.json` + `model.safetensors`, everything needed to score elsewhere.

config.json holds the schema version, the model spec (class + hyper-parameters), app extras (id
maps, scaler statistics, thresholds...), metrics, library versions, creation time and the SHA-256
of the weights file, so a truncated or tampered file is caught before loading. It also records
`config_sha256`, the SHA-256 of the canonical JSON of the whole config minus that field, so an edited
config.json (a threshold, a scaler statistic...) is refused too; directories written before that
field existed still load, with a warning that they are unverified. (The checksums catch damage and
casual edits; they are not a signature against someone who rewrites them.) Nothing is ever
unpickled: weights are safetensors, everything else JSON. Saving is atomic for readers: the model
path is a relative link to a versioned sibling folder, swapped in one rename (core.jobs.atomic);
readers resolve the link once and read config and weights from that one version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import ArtifactError
from core.jobs.atomic import _umask, atomic_dir
from core.jobs.hashing import file_digest
from core.jsontext import parse_json
from core.models import model_from_spec, model_spec

SCHEMA_VERSION = 1
FORMAT = "ae-model-dir"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
EXTRA_PREFIX = "extra."
HASH_FIELD = "config_sha256"
_READ_TRIES = 5  # re-resolve the link when a concurrent save replaced the version being read

log = logging.getLogger(__name__)


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of `config` without its own hash field."""
    body = {k: v for k, v in config.items() if k != HASH_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _version_dir(path: Path) -> Path:
    """The folder the model path points at now (itself when it is not a link)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _consistent(path: Path, read):  # noqa: ANN001, ANN202 - read(version_dir) -> result
    """Run `read` on one version of the model directory; when a file vanished because a concurrent
    save swapped the link (and removed the version being read), retry on the new version."""
    for attempt in range(_READ_TRIES):
        version = _version_dir(path)
        try:
            return read(version)
        except (FileNotFoundError, _Vanished):
            if attempt == _READ_TRIES - 1 or _version_dir(path) == version:
                raise
    raise AssertionError("unreachable")


class _Vanished(ArtifactError):
    """A file of the version being read is missing: retried if a concurrent save replaced that
    version, otherwise reported as is."""


def library_versions() -> dict[str, str]:
    import numpy
    import safetensors

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__, "safetensors": safetensors.__version__}
    try:
        from importlib.metadata import version

        versions["ae-toolkit"] = version("ae-toolkit")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        versions["ae-toolkit"] = "unknown"
    return versions


def directory_hash(path: str | Path) -> str:
    """A content hash of a saved model directory (config + weights), for run manifests."""
    path = Path(path)

    def read(version: Path) -> str:
        h = hashlib.sha256()
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            h.update(file_digest(version / name).encode())
        return h.hexdigest()

    return _consistent(path, read)


@dataclass
class Artifact:
    model: nn.Module
    extras: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def save_artifact(path: str | Path, model: nn.Module, *, kind: str, extras: dict[str, Any] | None = None,
                  tensors: dict[str, torch.Tensor] | None = None, metrics: dict[str, Any] | None = None,
                  data_fingerprint: str | None = None) -> Path:
    """Write a model directory atomically; `kind` names the app object that owns it."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for name, t in (tensors or {}).items():
        state[EXTRA_PREFIX + name] = t.detach().to("cpu").contiguous()
    with atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS_NAME))
        os.chmod(tmp / WEIGHTS_NAME, 0o666 & ~_umask())  # safetensors writes 0600; follow the umask
        config = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "model": model_spec(model),
            "extras": extras or {},
            "metrics": metrics or {},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": library_versions(),
            "data_fingerprint": data_fingerprint,
            "weights_sha256": file_digest(tmp / WEIGHTS_NAME),
        }
        config = json.loads(json.dumps(config, default=_json_default))  # hash exactly what is read back
        config[HASH_FIELD] = config_digest(config)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return path


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in config.json")


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a model directory's config.json without touching the weights."""
    path = Path(path)
    return _consistent(path, lambda version: _read_config_at(path, version))


def _read_config_at(path: Path, version: Path) -> dict[str, Any]:
    """Read `version`/config.json (`path` is the name the user gave, for messages)."""
    if not version.exists():
        raise _Vanished(f"model directory {path} does not exist")
    if not version.is_dir():
        raise _Vanished(f"{path} is not a model directory")
    cfg_file = path / CONFIG_NAME
    try:
        text = (version / CONFIG_NAME).read_text()
    except (FileNotFoundError, IsADirectoryError):
        raise _Vanished(f"{path} is not a model directory: {CONFIG_NAME} is missing") from None
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{cfg_file} is corrupt: {exc}") from None
    config = parse_json(text, f"{cfg_file} is corrupt:", ArtifactError)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ArtifactError(f"{cfg_file} is not an ae model config")
    if config.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"{path} has schema version {config.get('schema_version')}, "
                            f"this version reads {SCHEMA_VERSION}")
    recorded = config.get(HASH_FIELD)
    if recorded is None:
        log.warning("%s has no %s (written by an older version): its contents are unverified",
                    cfg_file, HASH_FIELD)
    elif recorded != config_digest(config):
        raise ArtifactError(f"{cfg_file} does not match its recorded {HASH_FIELD} (edited or damaged); "
                            f"save the model again instead of editing it")
    return config


def load_artifact(path: str | Path, expected_kind: str | None = None, device: str | torch.device = "cpu") -> Artifact:
    path = Path(path)
    return _consistent(path, lambda version: _load_at(path, version, expected_kind, device))


def _load_at(path: Path, version: Path, expected_kind: str | None, device: str | torch.device) -> Artifact:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = _read_config_at(path, version)
    if expected_kind is not None and config.get("kind") != expected_kind:
        raise ArtifactError(f"{path} holds a {config.get('kind')!r} model, not a {expected_kind!r} model")
    weights = path / WEIGHTS_NAME
    if not (version / WEIGHTS_NAME).is_file():
        raise _Vanished(f"{path}: {WEIGHTS_NAME} is missing")
    try:
        if file_digest(version / WEIGHTS_NAME) != config.get("weights_sha256"):
            raise ArtifactError(f"{weights} does not match its recorded checksum (truncated or modified)")
        state = load_file(str(version / WEIGHTS_NAME), device=str(device))
    except FileNotFoundError:  # removed while reading: a concurrent save, retried by _consistent
        raise _Vanished(f"{path}: {WEIGHTS_NAME} is missing") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights} cannot be read: {exc}") from None
    try:
        model = model_from_spec(config["model"])
    except Exception as exc:  # noqa: BLE001 - whatever an edited spec makes the constructor raise
        reason = str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
        raise ArtifactError(f"{path / CONFIG_NAME} describes a model this version cannot build: {reason}") from None
    model_state = {k: v for k, v in state.items() if not k.startswith(EXTRA_PREFIX)}
    tensors = {k[len(EXTRA_PREFIX):]: v for k, v in state.items() if k.startswith(EXTRA_PREFIX)}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{weights} does not fit the model in {CONFIG_NAME}: {str(exc)[:300]}") from None
    model.to(device).eval()
    meta = {k: config[k] for k in ("kind", "created", "versions", "data_fingerprint", "weights_sha256")
            if k in config}
    return Artifact(model=model, extras=config.get("extras", {}), tensors=tensors,
                    metrics=config.get("metrics", {}), meta=meta)
