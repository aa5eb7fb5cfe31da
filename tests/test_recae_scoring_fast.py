"""Batch scoring (recae.scoring.score_all) against a straightforward reference: every user's whole
dense row through the module, the bias blend, rated items dropped, a plain sort, the top k clipped to
the rating scale. Seen-items exclusion, k above a user's unrated items (and above the catalogue),
several batches, the blend, an implicit model (low ratings are seen too) and an item-based one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recae.metrics import topk_indices
from recae.recommender import AutoencoderRecommender
from recae.scoring import score_all


def _catalogue(n_users: int = 120, n_items: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 1500
    frame = pd.DataFrame({"user": rng.integers(1, n_users + 1, n) * 10,  # raw ids are not indices
                          "item": rng.integers(1, n_items + 1, n) + 1000,
                          "rating": rng.integers(1, 6, n).astype(float)})
    heavy = pd.DataFrame({"user": 7, "item": np.arange(1, n_items - 4) + 1000,  # 55 of 60 rated: 5 left
                          "rating": rng.integers(1, 6, n_items - 5).astype(float)})
    return pd.concat([frame, heavy]).drop_duplicates(["user", "item"]).reset_index(drop=True)


def _reference(rec: AutoencoderRecommender, frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """One user at a time, nothing clever."""
    users, items = rec.user_map_.raw, rec.item_map_.raw
    dense = np.zeros((len(users), len(items)), dtype=np.float32)
    positive = frame if not rec.implicit else frame[frame["rating"] >= rec.positive_threshold]
    for u, i, r in positive[["user", "item", "rating"]].itertuples(index=False):
        dense[rec.user_map_.to_index(u), rec.item_map_.to_index(i)] = r
    with torch.no_grad():
        if rec.spec.item_based:
            out = rec.module_.reconstruct(torch.from_numpy(dense.T.copy())).numpy().T
        else:
            out = rec.module_.reconstruct(rec.spec.inputs(torch.from_numpy(dense))[0]).numpy()
    out = out.astype(np.float64)
    if rec.bias_ is not None and rec.blend_weight_ != 1.0:
        base = rec.bias_["mu"] + np.asarray(rec.bias_["user"])[:, None] + np.asarray(rec.bias_["item"])[None, :]
        out = (base + rec.blend_weight_ * (out - base)).astype(np.float32).astype(np.float64)
    rated = frame.groupby("user")["item"].agg(set).to_dict()  # every rating, low ones included
    rows = []
    for u, raw in enumerate(users):
        order = sorted((j for j in range(len(items)) if items[j] not in rated[raw]), key=lambda j: (-out[u, j], j))
        for rank, j in enumerate(order[:k], start=1):
            s = out[u, j] if rec.implicit else np.clip(out[u, j], *rec.scale_)
            rows.append((raw, items[j], rank, np.float32(s)))
    return pd.DataFrame(rows, columns=["user", "item", "rank", "score"])


def _check(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == ["user", "item", "rank", "score"]
    assert got["score"].dtype == np.float32
    assert len(got) == len(want)
    np.testing.assert_array_equal(got["user"].to_numpy(), want["user"].to_numpy())
    np.testing.assert_array_equal(got["rank"].to_numpy(), want["rank"].to_numpy())
    np.testing.assert_array_equal(got["item"].to_numpy(), want["item"].to_numpy())
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("model", "blend"), [("course", 1.0), ("course", 0.6), ("multdae", 1.0),
                                               ("autorec", 1.0)])
def test_score_all_matches_a_plain_reference(tmp_path: Path, model: str, blend: float) -> None:
    frame = _catalogue()
    rec = AutoencoderRecommender(model=model, epochs=2, hidden=8 if model != "course" else None,
                                 device="cpu").fit(frame)
    rec.blend_weight_ = blend
    rec.save(tmp_path / "m")
    rec = AutoencoderRecommender.load(tmp_path / "m", device="cpu")
    for k in (20, 100):  # 100: more than the catalogue; user 7 has 5 unrated items, fewer than either
        out = tmp_path / f"s{k}.parquet"
        score_all(tmp_path / "m", out, k=k, batch_users=7, device="cpu")
        got = pd.read_parquet(out)
        want = _reference(rec, frame, k)
        _check(got, want)
        offered = (got["user"] == 7).sum()  # user 7 left 5 items unrated
        assert offered == 5 if not rec.implicit else 0 < offered <= 5
        rated = set(map(tuple, frame[["user", "item"]].to_numpy().tolist()))
        assert not rated & set(map(tuple, got[["user", "item"]].to_numpy().tolist()))
    if model == "autorec":  # the item-based full matrix is scored from, never masked in place
        rec.score_users(np.arange(len(rec.user_map_)), 10)
        assert rec._full is not None and np.isfinite(rec._full).all()


def _old_top(rec: AutoencoderRecommender, scores: np.ndarray, seen: sp.csr_matrix,
             k: int) -> tuple[np.ndarray, np.ndarray]:
    """`_top` as it was (float64 copy, nonzero(), argpartition + stable sort)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    r, c = seen.nonzero()
    scores[r, c] = -np.inf
    top = topk_indices(scores, k)
    vals = np.take_along_axis(scores, top, axis=1)
    if not rec.implicit:
        vals = np.where(np.isfinite(vals), np.clip(vals, *rec.scale_), vals)
    return top, vals


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_keeps_the_old_choice_with_nans_infs_and_explicit_zeros(dtype: type) -> None:
    rec = AutoencoderRecommender(model="course", epochs=1, device="cpu").fit(_catalogue())
    rng = np.random.default_rng(1)
    scores = (rng.normal(3, 2, (40, 60))).astype(dtype)
    scores[3, [4, 9, 11]] = np.nan
    scores[5, :] = np.nan  # nothing to offer
    scores[6, 2] = np.inf  # takes a place, dropped by the callers as non-finite
    seen = sp.random(40, 60, density=0.3, format="lil", random_state=2, dtype=np.float32)
    seen[8] = 1.0  # every item seen
    seen = seen.tocsr()
    seen.data[::7] = 0.0  # stored zeros are not ratings
    seen.data[seen.indptr[8]:seen.indptr[9]] = 1.0
    for k in (1, 10, 55, 60, 80):
        top, vals = rec._top(scores.copy(), seen, k, inplace=True)
        old_top, old_vals = _old_top(rec, scores, seen, k)
        ok = np.isfinite(vals)
        np.testing.assert_array_equal(ok, np.isfinite(old_vals))
        np.testing.assert_array_equal(top[ok], old_top[ok])
        np.testing.assert_array_equal(vals[ok], old_vals[ok])
        assert vals.dtype == np.float64 and top.dtype == np.int64
        assert not ok[5].any() and not ok[8].any()
    same = scores.copy()
    rec._top(same, seen, 10)  # not in place unless asked
    np.testing.assert_array_equal(same, scores)
    top, vals = rec._top(np.zeros((0, 60), dtype=np.float32), seen[:0], 20, inplace=True)
    assert top.shape == (0, 20) and vals.shape == (0, 20)


def test_top_orders_equal_scores_by_item_index_also_at_the_kth_place() -> None:
    rec = AutoencoderRecommender(model="multdae", epochs=1, device="cpu").fit(_catalogue())  # no clipping
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (30, 50)).astype(np.float32)  # many equal scores in every row
    seen = sp.random(30, 50, density=0.2, format="csr", random_state=4, dtype=np.float32)
    for k in (1, 3, 7, 20, 49, 50, 60):
        top, vals = rec._top(scores, seen, k)
        for r in range(30):
            unseen = [j for j in range(50) if j not in set(seen[r].indices)]
            want = sorted(unseen, key=lambda j: (-scores[r, j], j))[:k]
            ok = np.isfinite(vals[r])
            assert top[r][ok].tolist() == want
            np.testing.assert_array_equal(vals[r][ok], scores[r, want])
