"""Can an autoencoder beat the user+item bias baseline by >= 2 % RMSE on the sparse generated set?

Protocol (fixed before any result was looked at):

- data: `synthetic(0)` of bench/recae_selection.py (610 users x ~9.1k items, half stars, Zipf-like
  item popularity, biases + rank-8 tastes sd 0.6 + noise sd 0.7);
- split: `recae.interactions.random_split(frame, 0.1, seed=0)` (the selection bench's 90/10 split);
  inside the 90 % the product's validation rule, `recae.selection.SelectionPlan(seed=0).split`
  (a seeded 10 % of each user's ratings, users with 5+ ratings);
- every candidate's setting is chosen by validation RMSE only (model fitted on the fit part); the
  chosen setting is refit on the whole 90 % and the 10 % test ratings are scored once. The
  product's blend fallback (bias + alpha*(model - bias), alpha in [0, 1] chosen on validation) is
  reported beside each candidate's own test RMSE;
- ids are indexed over the 90 %; a (user, item) whose user or item has no rating in the part a
  model was fitted on gets the bias prediction. All predictions are clipped to [0.5, 5] as
  BiasBaseline clips.

Candidates:

1. bias: recae.baselines.BiasBaseline() with the product's defaults (reg_user 15, reg_item 10),
   nothing to choose.
2. residual I-AutoRec: rows are items (inputs: the item's residuals r - (mu + b_u + b_i) over the
   610 users, from the bias baseline fitted on the same part; unrated = 0 = the bias prediction),
   one hidden layer of 500, sigmoid or identity, identity out, loss = mean squared error over the
   observed residuals + l2/2 * (|W1|^2 + |W2|^2) (the product's L2Objective convention), full-batch
   L-BFGS (strong Wolfe) for a fixed number of iterations; prediction = bias + decoded residual.
   Grid: activation {sigmoid, identity} x l2 {0.003, 0.01, 0.03}.
3. residual U-AutoRec: the same with rows = users (9.1k-wide input), same grid.
4. reference, not an autoencoder: bias + rank-k factorisation of the same residuals by ALS with
   weighted-lambda regularisation (lambda * n_u |p_u|^2 + lambda * n_i |q_i|^2), 15 sweeps.
   Grid: rank {8, 32} x lambda {0.03, 0.1, 0.3}.

The sparse computation (hidden = act(sparse rows @ W1 + b1), outputs only at the observed entries)
gives the same loss and gradients as the dense I-AutoRec, just without the unobserved outputs.

Usage: python bench/recae_sparse_probe.py [--iters 100] [--out bench/recae_sparse_probe.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import table
from recae_selection import synthetic

from core.jobs.atomic import atomic_write_text
from recae.baselines import BiasBaseline
from recae.interactions import IdMap, random_split
from recae.selection import SelectionPlan, blend_weight

LO, HI = 0.5, 5.0
AE_GRID = [{"act": a, "l2": l2} for a in ("sigmoid", "identity") for l2 in (0.003, 0.01, 0.03)]
MF_GRID = [{"rank": k, "reg": r} for k in (8, 32) for r in (0.03, 0.1, 0.3)]


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - true) ** 2)))


class Part:
    """Ratings of one part (fit part or the whole 90 %) as index arrays over the 90 %'s id maps."""

    def __init__(self, frame, users: IdMap, items: IdMap) -> None:  # noqa: ANN001
        self.u = users.index_array(frame["user"].to_numpy())
        self.i = items.index_array(frame["item"].to_numpy())
        self.r = frame["rating"].to_numpy(dtype=float)
        self.nu, self.ni = len(users), len(items)
        self.bias = BiasBaseline().fit(self.u, self.i, self.r, self.nu, self.ni)
        self.resid = self.r - self.bias.predict(self.u, self.i)
        self.cu = np.bincount(self.u, minlength=self.nu)
        self.ci = np.bincount(self.i, minlength=self.ni)

    def seen(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        ok = (u >= 0) & (i >= 0)
        ok[ok] &= (self.cu[u[ok]] > 0) & (self.ci[i[ok]] > 0)
        return ok


# ------------------------------------------------------------------------------------------ autorec
def fit_autorec(part: Part, item_based: bool, act: str, l2: float, hidden: int, iters: int, seed: int = 0):  # noqa: ANN201
    """Residual AutoRec on `part`; returns predict(u, i) -> ratings."""
    torch.manual_seed(seed)
    rows, cols = (part.i, part.u) if item_based else (part.u, part.i)
    n_rows, n_cols = (part.ni, part.nu) if item_based else (part.nu, part.ni)
    idx = torch.as_tensor(np.stack([rows, cols]))
    x = torch.sparse_coo_tensor(idx, torch.as_tensor(part.resid, dtype=torch.float32), (n_rows, n_cols),
                                check_invariants=False).coalesce().to_sparse_csr()
    target, c_x = x.values(), x.col_indices()
    bound = 1.0 / np.sqrt(n_cols)
    w1 = (torch.rand(n_cols, hidden) * 2 - 1).mul_(bound).requires_grad_()
    b1 = torch.zeros(hidden, requires_grad=True)
    v = (torch.rand(n_cols, hidden) * 2 - 1).mul_(1.0 / np.sqrt(hidden)).requires_grad_()  # decoder, W2 transposed
    b2 = torch.zeros(n_cols, requires_grad=True)
    f = torch.sigmoid if act == "sigmoid" else (lambda z: z)

    def encode() -> torch.Tensor:
        return f(torch.sparse.mm(x, w1) + b1)

    def train_outputs() -> torch.Tensor:  # decoded values at the observed entries only (SDDMM)
        return torch.sparse.sampled_addmm(x, encode(), v.T, beta=0.0).values() + b2[c_x]

    def decode(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (encode()[r] * v[c]).sum(1) + b2[c]

    opt = torch.optim.LBFGS([w1, b1, v, b2], lr=1.0, max_iter=iters, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((train_outputs() - target) ** 2).mean() + l2 / 2 * ((w1 ** 2).sum() + (v ** 2).sum())
        loss.backward()
        return loss

    opt.step(closure)

    def predict(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        out = part.bias.predict(u, i)
        ok = part.seen(u, i)
        r, c = (i[ok], u[ok]) if item_based else (u[ok], i[ok])
        with torch.no_grad():
            out[ok] += decode(torch.as_tensor(r), torch.as_tensor(c)).double().numpy()
        return np.clip(out, LO, HI)

    return predict


# --------------------------------------------------------------------------------------- ALS (ref)
def _solve_side(rows, cols, res, n_rows, other, reg, counts):  # noqa: ANN001, ANN202
    k = other.shape[1]
    out = np.zeros((n_rows, k))
    order = np.argsort(rows, kind="stable")
    rs, cs, vs = rows[order], cols[order], res[order]
    starts = np.searchsorted(rs, np.arange(n_rows + 1))
    eye = np.eye(k)
    for r in range(n_rows):
        a, b = starts[r], starts[r + 1]
        if a == b:
            continue
        q = other[cs[a:b]]
        out[r] = np.linalg.solve(q.T @ q + reg * counts[r] * eye, q.T @ vs[a:b])
    return out


def fit_mf(part: Part, rank: int, reg: float, sweeps: int = 15, seed: int = 0):  # noqa: ANN201
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.1, (part.nu, rank))
    q = rng.normal(0, 0.1, (part.ni, rank))
    for _ in range(sweeps):
        p = _solve_side(part.u, part.i, part.resid, part.nu, q, reg, part.cu)
        q = _solve_side(part.i, part.u, part.resid, part.ni, p, reg, part.ci)

    def predict(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        out = part.bias.predict(u, i)
        ok = part.seen(u, i)
        out[ok] += (p[u[ok]] * q[i[ok]]).sum(1)
        return np.clip(out, LO, HI)

    return predict


# ------------------------------------------------------------------------------------------- probe
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=100, help="L-BFGS iterations per autoencoder fit")
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--only", default="bias,iautorec,uautorec,mf")
    ap.add_argument("--out", default=str(Path(__file__).with_name("recae_sparse_probe.json")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    t_start = time.perf_counter()

    frame = synthetic(0)
    train, test = random_split(frame, 0.1, seed=0)
    fit_df, val_df = SelectionPlan(seed=0).split(train)
    users, items = IdMap(train["user"]), IdMap(train["item"])
    whole, fitp = Part(train, users, items), Part(fit_df, users, items)
    vu, vi = users.index_array(val_df["user"].to_numpy()), items.index_array(val_df["item"].to_numpy())
    tu, ti = users.index_array(test["user"].to_numpy()), items.index_array(test["item"].to_numpy())
    vy, ty = val_df["rating"].to_numpy(dtype=float), test["rating"].to_numpy(dtype=float)
    info = {"ratings": len(frame), "users": int(frame["user"].nunique()), "items": int(frame["item"].nunique()),
            "rated_once": int((frame.groupby("item").size() == 1).sum()), "train": len(train), "test": len(test),
            "fit": len(fit_df), "val": len(val_df), "test_items_unseen": int((ti < 0).sum())}
    print(info, flush=True)

    vbase, tbase = fitp.bias.predict(vu, vi), whole.bias.predict(tu, ti)
    bias_val, bias_test = rmse(vbase, vy), rmse(tbase, ty)
    results = [{"candidate": "bias", "chosen": {}, "val_rmse": bias_val, "test_rmse": bias_test,
                "alpha": None, "test_rmse_blend": None, "trials": [], "seconds": 0.0}]

    def search(name: str, grid: list[dict], make) -> None:  # noqa: ANN001
        t0 = time.perf_counter()
        trials, best = [], (np.inf, None, None)
        for s in grid:
            t1 = time.perf_counter()
            pred = make(fitp, **s)(vu, vi)
            score = rmse(pred, vy)
            trials.append({**s, "val_rmse": round(score, 4), "seconds": round(time.perf_counter() - t1, 1)})
            print(f"  {name} {s}: val {score:.4f} ({trials[-1]['seconds']} s)", flush=True)
            if score < best[0]:
                best = (score, s, pred)
        score, chosen, vpred = best
        alpha = round(blend_weight(vpred, vbase, vy), 3)
        t1 = time.perf_counter()
        tpred = make(whole, **chosen)(tu, ti)
        refit_s = round(time.perf_counter() - t1, 1)
        results.append({"candidate": name, "chosen": chosen, "val_rmse": score, "test_rmse": rmse(tpred, ty),
                        "alpha": alpha, "test_rmse_blend": rmse(np.clip(tbase + alpha * (tpred - tbase), LO, HI), ty),
                        "trials": trials, "refit_seconds": refit_s, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{name}: chosen {chosen}, val {score:.4f}, test {results[-1]['test_rmse']:.4f} "
              f"(bias {bias_test:.4f})", flush=True)

    only = args.only.split(",")
    if "iautorec" in only:
        search("residual I-AutoRec", AE_GRID,
               lambda p, act, l2: fit_autorec(p, True, act, l2, args.hidden, args.iters))
    if "uautorec" in only:
        search("residual U-AutoRec", AE_GRID,
               lambda p, act, l2: fit_autorec(p, False, act, l2, args.hidden, args.iters))
    if "mf" in only:
        search("bias + ALS MF (reference)", MF_GRID, lambda p, rank, reg: fit_mf(p, rank, reg))

    rows = []
    for r in results:
        gain = 1 - r["test_rmse"] / bias_test
        r["test_gain_vs_bias"] = round(gain, 4)
        chosen = ", ".join(f"{k}={v}" for k, v in r["chosen"].items()) or "-"
        blend = "" if r["alpha"] is None else f"{r['test_rmse_blend']:.4f} (α={r['alpha']:g})"
        vs_bias = "–" if r["alpha"] is None else f"{-gain:+.1%}"
        rows.append([r["candidate"], chosen, r["val_rmse"], r["test_rmse"], vs_bias, blend, f"{r['seconds']:.0f}"])
    md = table(f"Sparse generated set (synthetic(0)), random 90/10 split seed 0, settings chosen on validation "
               f"(bias val {bias_val:.4f}, test {bias_test:.4f})",
               ["candidate", "chosen on validation", "val RMSE", "test RMSE", "test vs bias", "test RMSE blended",
                "seconds (search+refit)"], rows)
    doc = {"protocol": __doc__.split("Usage:")[0].strip(), "data": info, "iters": args.iters, "hidden": args.hidden,
           "bias": {"val_rmse": bias_val, "test_rmse": bias_test}, "results": results, "table": md,
           "seconds": round(time.perf_counter() - t_start, 1)}
    atomic_write_text(args.out, json.dumps(doc, indent=2, default=float) + "\n")
    print(f"total {doc['seconds']} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
