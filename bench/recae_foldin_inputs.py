"""New users: what a linear item-item model can make of a few ratings, on validation users only.

Why: the fold-in bar (issue 14: with 5 ratings, NDCG@20 at least 1.5x popularity's) is missed at
1.17x by every autoencoder (bench/recae_foldin.py). Before trying more models, this asks how far the
inputs themselves can go, with EASE (closed form, deterministic, the strongest top-N baseline here):

- trained on the positives (ratings >= 4, as every top-N model here) or on every rating (binarised:
  "rated" as the signal);
- a new user's given ratings folded in as their positives only (what `fold_in` does) or as every
  rated item;
- λ in {100, 200, 500, 1000, 2000} (few ratings per user may want more shrinkage); the best was at
  the edge (2000), so the grid was widened to 5000, 10000 and 20000 after that run.

Protocol: bench/recae_foldin.py's (ML-100K, the 5 user folds of recae.protocol.user_folds, split
seed 0; each user's ratings shuffled once, the first n given, everything after the first 10 the
target, NDCG@20 of the target positives with the first 10 ratings excluded from the ranking for
every n: the rule since session 12; the first run excluded only the n given, its record
bench/recae_foldin_inputs_given.json), but on each fold's
*validation* users (about 100 per fold, never in that fold's training data), never its test users:
nothing here may be read as a test figure, and no setting is carried into the product from it.
Popularity (trained on the positives) is the reference.

Usage: AE_DATA_DIR=../shared/data python bench/recae_foldin_inputs.py
Record: bench/recae_foldin_inputs.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from _common import data_dir, table
from recae_foldin import GIVEN, new_users, rows, topn

from core.jobs.atomic import atomic_write_text
from recae.baselines import EASE, Popularity
from recae.datasets import load_ml100k
from recae.interactions import IdMap, to_csr
from recae.protocol import user_folds

OUT = Path(__file__).with_name("recae_foldin_inputs.json")
LAMBDAS = (100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0)


def main() -> None:
    t0 = time.perf_counter()
    frame = load_ml100k(data_dir())
    per_user: dict[tuple[str, int], list[np.ndarray]] = {}
    n_users = 0
    for split in user_folds(frame, seed=0):
        items = IdMap(split.train["item"])
        users = IdMap(split.train["user"])
        rated = frame[frame["user"].isin(set(users.raw.tolist())) & frame["item"].isin(set(items.raw.tolist()))]
        train = {"positives": to_csr(split.train.assign(rating=1.0), users, items),
                 "every rating": to_csr(rated.assign(rating=1.0), users, items)}
        val = new_users(frame, np.unique(split.val_fold_in["user"].to_numpy()), items)
        ordered = list(val.values())
        n_users += len(ordered)
        target = [u.iloc[max(GIVEN):] for u in ordered]
        known = [u.iloc[:max(GIVEN)] for u in ordered]  # never ranked, for every n
        models = {(f"EASE λ {lam:g}, trained on {name}"): EASE(reg=lam).fit(x)
                  for name, x in train.items() for lam in LAMBDAS}
        pop = Popularity().fit(train["positives"])
        for n in GIVEN:
            given = [u.iloc[:n] for u in ordered]
            inputs = {"positives": rows(given, items, implicit=True),
                      "every rated item": rows([g.assign(rating=5.0) for g in given], items, implicit=True)}
            per_user.setdefault(("popularity", n), []).append(topn(pop.scores(inputs["positives"]), known, target,
                                                                    items))
            for name, model in models.items():
                for fed, x in inputs.items():
                    per_user.setdefault((f"{name}; fed {fed}", n), []).append(topn(model.scores(x), known, target,
                                                                                    items))
    ndcg = {(name, n): float(np.nanmean(np.vstack(parts)[:, 0])) for (name, n), parts in per_user.items()}
    names = list(dict.fromkeys(name for name, _ in ndcg))
    pop5 = ndcg[("popularity", 5)]
    rows_out = sorted(([name, *[f"{ndcg[(name, n)]:.4f}" for n in GIVEN], f"{ndcg[(name, 5)] / pop5:.2f}×"]
                       for name in names), key=lambda r: float(r[3]), reverse=True)
    table(f"new users, validation users of the 5 folds ({n_users}): NDCG@20 after n ratings; × = n = 5 vs popularity",
          ["model; what a new user's ratings are fed as", *[f"n = {n}" for n in GIVEN], "× pop, n = 5"], rows_out)
    doc = {"protocol": __doc__.split("Usage:")[0].strip(), "validation_users": n_users,
           "ndcg@20": {name: {str(n): ndcg[(name, n)] for n in GIVEN} for name in names},
           "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_text(str(OUT), json.dumps(doc, indent=2))
    print(f"wrote {OUT} ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
