"""Model specs: a module is rebuilt from {"class": name, "config": {...}} and never unpickled.

Each module class registers itself here with its config dataclass (the bottom of dense.py,
conv1d.py, variational.py); an application registers its own the same way. This module imports no
model, so a model whose config holds another model's spec (the VAE's body) can rebuild it without
an import circle.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from core.errors import ArtifactError, UserError
from core.typecheck import check_field_types

MODEL_CLASSES: dict[str, tuple[type[nn.Module], type]] = {}


def register_model(model_cls: type[nn.Module], config_cls: type) -> None:
    """Let artifacts rebuild `model_cls` from its name and a `config_cls` instance's fields."""
    MODEL_CLASSES[model_cls.__name__] = (model_cls, config_cls)


def model_spec(model: nn.Module) -> dict[str, Any]:
    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise ArtifactError(f"model class {name} is not registered in core.specs")
    return {"class": name, "config": dataclasses.asdict(model.config)}


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    try:
        model_cls, config_cls = MODEL_CLASSES[spec["class"]]
    except (KeyError, TypeError):
        raise ArtifactError(f"unknown or missing model class in spec: {spec!r:.200}") from None
    fields = {f.name for f in dataclasses.fields(config_cls)}
    raw = dict(spec.get("config") or {})
    unknown = set(raw) - fields
    if unknown:
        raise ArtifactError(f"model config has unknown fields {sorted(unknown)} for {spec['class']}")
    try:
        config = config_cls(**raw)
        check_field_types(config, f"model config of {spec['class']}")
        return model_cls(config)
    except UserError as exc:
        raise ArtifactError(str(exc)) from None
    except TypeError as exc:
        raise ArtifactError(f"model config for {spec['class']} is invalid: {exc}") from None
