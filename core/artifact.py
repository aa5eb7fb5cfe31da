"""Model directories: `config.json` + `model.safetensors`, everything needed to score elsewhere.

config.json holds the schema version, the model spec (class + hyper-parameters), app extras (id
maps, scaler statistics, thresholds...), metrics, library versions, creation time and the SHA-256
of the weights file, so a truncated or tampered file is caught before loading. Nothing is ever
unpickled: weights are safetensors, everything else JSON. Saving is atomic (temp dir + rename).
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import ArtifactError
from core.jobs.atomic import atomic_dir
from core.jobs.hashing import file_digest
from core.models import model_from_spec, model_spec

SCHEMA_VERSION = 1
FORMAT = "ae-model-dir"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
EXTRA_PREFIX = "extra."


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
    h = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        h.update(file_digest(path / name).encode())
    return h.hexdigest()


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
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=_json_default))
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
    if not path.exists():
        raise ArtifactError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ArtifactError(f"{path} is not a model directory")
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise ArtifactError(f"{path} is not a model directory: {CONFIG_NAME} is missing")
    try:
        config = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{cfg_file} is corrupt: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ArtifactError(f"{cfg_file} is not an ae model config")
    if config.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"{path} has schema version {config.get('schema_version')}, "
                            f"this version reads {SCHEMA_VERSION}")
    return config


def load_artifact(path: str | Path, expected_kind: str | None = None, device: str | torch.device = "cpu") -> Artifact:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config = read_config(path)
    if expected_kind is not None and config.get("kind") != expected_kind:
        raise ArtifactError(f"{path} holds a {config.get('kind')!r} model, not a {expected_kind!r} model")
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise ArtifactError(f"{path}: {WEIGHTS_NAME} is missing")
    if file_digest(weights) != config.get("weights_sha256"):
        raise ArtifactError(f"{weights} does not match its recorded checksum (truncated or modified)")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights} cannot be read: {exc}") from None
    model = model_from_spec(config["model"])
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
