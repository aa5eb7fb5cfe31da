"""Several registered modules saved and rebuilt as one: an ensemble whose members are trained apart.

The artifact format holds one module; a bundle is that module for an estimator made of several
networks (recae's stacked recommender). Its config lists the members' specs, so loading rebuilds
every member from its own config and the one safetensors file fills them all ("members.0.…").
The bundle computes nothing itself: its owner knows how each member reads its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from core.errors import UserError
from core.specs import model_from_spec, model_spec, register_model


@dataclass
class BundleConfig:
    """`members`: model specs ({"class": ..., "config": {...}}), in the owner's order."""

    members: list[dict[str, Any]]

    def validate(self) -> None:
        if not self.members:
            raise UserError("a module bundle needs at least one member")


class ModuleBundle(nn.Module):
    """`modules`: the (trained) members themselves, matching `config`; None (loading) rebuilds them
    from their specs for the saved weights to fill."""

    def __init__(self, config: BundleConfig, modules: list[nn.Module] | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.members = nn.ModuleList(modules if modules is not None
                                     else (model_from_spec(spec) for spec in config.members))

    @classmethod
    def of(cls, modules: list[nn.Module]) -> ModuleBundle:
        """A bundle holding these (trained) modules themselves, not copies."""
        return cls(BundleConfig(members=[model_spec(m) for m in modules]), modules)


register_model(ModuleBundle, BundleConfig)
