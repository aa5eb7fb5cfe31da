"""One estimator contract for every app: parameters from `__init__`, one fitted check, save/load.

In the manner of scikit-learn: every hyper-parameter is an explicit keyword of `__init__`, stored
under its own name, so `get_params` reads them from the signature and can never drift from it.
Runtime settings that are not part of the model (where it runs, whether bars show) are listed in
`_runtime_params` and are neither saved nor restored. Learned state ends in `_`.

Persistence goes through core.artifact (config.json + model.safetensors, never a pickle): a
subclass says what its fitted state is with `_fitted_state()` and rebuilds it with `_restore()`.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from core.artifact import Artifact, load_artifact, save_artifact
from core.device import resolve_device
from core.errors import ArtifactError, UserError

E = TypeVar("E", bound="Estimator")


@dataclasses.dataclass
class FittedState:
    """What `save` writes: the network, JSON-able extras and extra tensors (e.g. a sparse matrix)."""

    module: nn.Module
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


class Estimator:
    """Base class: subclasses set `kind` (the artifact's owner name) and `_fitted_attr`."""

    kind: ClassVar[str] = "estimator"
    _fitted_attr: ClassVar[str] = "module_"  # exists only after fit (or load)
    _runtime_params: ClassVar[tuple[str, ...]] = ("device", "progress")

    # ------------------------------------------------------------------------------- parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [name for name, p in sig.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """The model's hyper-parameters as given to `__init__` (runtime settings excluded)."""
        return {name: getattr(self, name) for name in self._param_names() if name not in self._runtime_params}

    def set_params(self: E, **params: Any) -> E:
        valid = set(self._param_names())
        unknown = sorted(set(params) - valid)
        if unknown:
            raise UserError(f"{type(self).__name__} has no parameter(s) {', '.join(unknown)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------------------- fitted state
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, self._fitted_attr)

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise UserError(f"this {type(self).__name__} is not fitted yet: call fit() or load() first")

    def _fitted_state(self) -> FittedState:
        raise NotImplementedError

    def _restore(self, artifact: Artifact) -> None:
        """Rebuild the learned state from a loaded artifact; raise KeyError/TypeError if it is incomplete."""
        raise NotImplementedError

    def _self_check(self) -> None:
        """Check a just-loaded estimator is whole and consistent (types, shapes, a tiny forward pass):
        a config edited with a forged checksum then fails at load, as an ArtifactError, not mid-job."""

    @classmethod
    def _params_from_saved(cls, extras: dict[str, Any]) -> dict[str, Any]:
        """The `__init__` arguments from a saved artifact's extras; a subclass translates (or refuses,
        naming the version) what an older or newer version wrote. The default takes `params` as saved."""
        return dict(extras["params"])

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        self.check_fitted()
        state = self._fitted_state()
        extras = {"params": _jsonable(self.get_params()), **state.extras}
        return save_artifact(path, state.module, kind=self.kind, extras=extras, tensors=state.tensors,
                             metrics=metrics or {})

    @classmethod
    def load(cls: type[E], path: str | Path, device: str = "auto") -> E:
        art = load_artifact(path, expected_kind=cls.kind)
        resolve_device(device)  # an unavailable device is the caller's error, not the model's
        try:
            params = cls._params_from_saved(art.extras)
            est = cls(**params, device=device)
            est._restore(art)
            est._self_check()
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything a damaged or edited file can cause
            reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            raise ArtifactError(f"{path} is not a valid {cls.__name__} of this version (edited or damaged?): "
                                f"{reason}") from None
        return est


def _jsonable(value: Any) -> Any:
    """Tuples become lists and dataclasses dicts, so config.json round-trips through `__init__`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
