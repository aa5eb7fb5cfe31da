"""Id maps and sparse user×item matrices, and the evaluation splits.

Raw ids map to contiguous indices in sorted order (stable across runs); the maps are saved with
the model as JSON, keeping integer ids integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.errors import UserError


class IdMap:
    def __init__(self, raw_ids: Any) -> None:
        ids = pd.unique(pd.Series(list(raw_ids)))
        try:
            ids = np.sort(ids)
        except TypeError:
            ids = np.array(sorted(ids, key=str), dtype=object)
        self.raw = ids
        self.index = {self._key(r): i for i, r in enumerate(ids.tolist())}

    @staticmethod
    def _key(raw: Any) -> Any:
        return raw.item() if isinstance(raw, np.generic) else raw

    def __len__(self) -> int:
        return len(self.raw)

    def __contains__(self, raw: Any) -> bool:
        return self._coerce(raw) in self.index

    def _coerce(self, raw: Any) -> Any:
        raw = self._key(raw)
        if raw in self.index:
            return raw
        if isinstance(raw, str) and self.raw.dtype.kind in "iu":
            try:
                return int(raw)
            except ValueError:
                return raw
        if not isinstance(raw, str) and self.raw.dtype.kind in "OU":
            return str(raw)
        return raw

    def to_index(self, raw: Any) -> int:
        key = self._coerce(raw)
        if key not in self.index:
            raise KeyError(raw)
        return self.index[key]

    def to_raw(self, idx: int | np.ndarray) -> Any:
        return self.raw[idx]

    def index_array(self, raw: pd.Series | np.ndarray) -> np.ndarray:
        """Indices for raw ids; unknown ids give -1."""
        return np.fromiter((self.index.get(self._coerce(r), -1) for r in raw), dtype=np.int64, count=len(raw))

    def to_dict(self) -> dict[str, Any]:
        kind = "int" if self.raw.dtype.kind in "iu" else "str"
        return {"type": kind, "ids": [int(x) if kind == "int" else str(x) for x in self.raw.tolist()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IdMap:
        ids = np.asarray(d["ids"], dtype=np.int64 if d["type"] == "int" else object)
        return cls(ids)


@dataclass
class Interactions:
    user_map: IdMap
    item_map: IdMap
    matrix: sp.csr_matrix  # users × items, float32 ratings, 0 = unrated

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, user_map: IdMap | None = None,
                   item_map: IdMap | None = None) -> Interactions:
        if frame.empty:
            raise UserError("no ratings to build a user×item matrix from")
        user_map = IdMap(frame["user"]) if user_map is None else user_map
        item_map = IdMap(frame["item"]) if item_map is None else item_map
        return cls(user_map, item_map, to_csr(frame, user_map, item_map))


def to_csr(frame: pd.DataFrame, user_map: IdMap, item_map: IdMap) -> sp.csr_matrix:
    """Ratings through fixed id maps; unknown users or items are dropped (count in attrs)."""
    u = user_map.index_array(frame["user"].to_numpy())
    i = item_map.index_array(frame["item"].to_numpy())
    keep = (u >= 0) & (i >= 0)
    m = sp.csr_matrix((frame["rating"].to_numpy(dtype=np.float32)[keep], (u[keep], i[keep])),
                      shape=(len(user_map), len(item_map)), dtype=np.float32)
    m.sum_duplicates()
    return m


def random_split(frame: pd.DataFrame, test_fraction: float = 0.1, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split of ratings (the AutoRec protocol)."""
    if not 0 < test_fraction < 1:
        raise UserError("test fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    is_test = rng.random(len(frame)) < test_fraction
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


@dataclass
class HeldOutUsers:
    train: pd.DataFrame
    val_fold_in: pd.DataFrame
    val_target: pd.DataFrame
    test_fold_in: pd.DataFrame
    test_target: pd.DataFrame


def heldout_users_split(frame: pd.DataFrame, n_val_users: int = 100, n_test_users: int = 100,
                        fold_in_fraction: float = 0.8, min_rating_positive: float = 4.0, min_positives: int = 5,
                        seed: int = 0) -> HeldOutUsers:
    """Liang et al. (2018) strong generalisation: ratings ≥ `min_rating_positive` become positives
    (rating 1); users with at least `min_positives` positives are kept; held-out users' positives
    on items seen in training are split `fold_in_fraction` / rest into fold-in and target."""
    pos = frame[frame["rating"] >= min_rating_positive][["user", "item"]].copy()
    pos["rating"] = 1.0
    counts = pos.groupby("user").size()
    users = counts[counts >= min_positives].index.to_numpy()
    if len(users) <= n_val_users + n_test_users:
        raise UserError(f"only {len(users)} users have {min_positives}+ positives; cannot hold out "
                        f"{n_val_users + n_test_users}")
    rng = np.random.default_rng(seed)
    users = rng.permutation(users)
    val_u, test_u = set(users[:n_val_users]), set(users[n_val_users:n_val_users + n_test_users])
    train_u = set(users[n_val_users + n_test_users:])
    train = pos[pos["user"].isin(train_u)].reset_index(drop=True)
    train_items = set(train["item"])

    def split(us: set) -> tuple[pd.DataFrame, pd.DataFrame]:
        part = pos[pos["user"].isin(us) & pos["item"].isin(train_items)]
        fold, target = [], []
        for _, g in part.groupby("user", sort=True):
            idx = rng.permutation(len(g))
            n_fold = max(1, int(round(fold_in_fraction * len(g))))
            fold.append(g.iloc[idx[:n_fold]])
            target.append(g.iloc[idx[n_fold:]])
        return pd.concat(fold, ignore_index=True), pd.concat(target, ignore_index=True)

    vf, vt = split(val_u)
    tf, tt = split(test_u)
    return HeldOutUsers(train, vf, vt, tf, tt)
