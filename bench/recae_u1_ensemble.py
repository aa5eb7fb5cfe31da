"""An ensemble of autoencoders on ML-100K u1: GLocal-K and I-AutoRec seeds averaged, the blend weight
chosen on a validation split of u1.base only, then u1.test RMSE beside each member and the bias baseline.

Protocol (fixed before any result was seen):
- Members, nothing re-tuned: GLocal-K with the setting recorded as `chosen` in bench/recae_glocalk.json
  (l2, sparsity, conv axes, pre-train and fine-tune epochs; chosen there on the same validation split)
  and autorec with its registered recipe (l2 0.003, the recommender's default, chosen by
  bench/recae_explicit.py), each trained through AutoencoderRecommender as bench/recae_glocalk.py does.
- Repeats: --groups seed groups of --per-group seeds each (group g: seeds g·k … g·k+k−1); every step
  below is done once per group, with that group's seeds only, so the spread over groups is the spread
  of the whole procedure (weight choice included).
1. Validation: random_split(u1.base, 0.05, seed=0) (as bench/recae_glocalk.py). Every member, for each
   seed of the group, trains on the 95 % fit part and predicts the 5 % held out (clipped to [1, 5]; a
   held-out user unseen in the fit part, if any, gets the fit part's mean from every member). The blend
   is  w · mean(GLocal-K seeds) + (1 − w) · mean(autorec seeds)  with w on the grid 0, 0.05, …, 1; the w
   with the lowest validation RMSE wins (ties: the lower w). u1.test is never read in this step.
2. Test: the same members and seeds train on all of u1.base (same epochs, same recipes) and predict
   u1.test (its ratings by users seen in u1.base); the group's validation-chosen w is applied and the
   blend is clipped to [1, 5]. RMSE and MAE per group; the median over groups and the min–max spread.
   Beside it, in the same run: each single member's median RMSE over all its seeds, each member's
   seed mean alone (w = 1 and w = 0: fixed, not chosen), the fixed even blend w = 0.5 (reference only,
   not chosen), and the user+item bias baseline of u1.base.
Every figure, setting, the validation curve of w and the chosen w go to bench/recae_u1_ensemble.json
(written atomically at the end). --smoke trains 1–2 epochs per member to check the plumbing and
writes its record to a temporary file instead, never to the JSON above.

Usage: AE_DATA_DIR=../shared/data python bench/recae_u1_ensemble.py [--device cpu] [--threads 2]
       [--groups 3] [--per-group 3] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import data_dir, median, table
from recae_glocalk import OUT as GLOCALK_JSON

from core.jobs.atomic import atomic_write_text
from recae.baselines import BiasBaseline
from recae.datasets import load_ml100k_fold
from recae.evaluate import explicit_metrics
from recae.interactions import IdMap, random_split
from recae.models import REGISTRY, glocalk_model, register
from recae.recommender import AutoencoderRecommender
from recae.stack import held_out_predictions

OUT = Path(__file__).with_name("recae_u1_ensemble.json")
GLOCALK, AUTOREC = "glocalk-chosen", "autorec"
W_GRID = [round(0.05 * k, 2) for k in range(21)]  # weight of the GLocal-K seed mean
SMOKE_EPOCHS = {"pretrain_epochs": 1, "finetune_epochs": 1, "autorec_epochs": 1}


def register_glocalk(choice: dict, smoke: bool) -> str:
    """Register the GLocal-K entry of bench/recae_glocalk.json's `chosen` (as recae_glocalk.py does);
    with --smoke a 1 + 1 epoch variant under another name."""
    pre, fine = choice["pretrain_epochs"], choice["finetune_epochs"]
    name = GLOCALK
    if smoke:
        name, pre, fine = GLOCALK + "-smoke", SMOKE_EPOCHS["pretrain_epochs"], SMOKE_EPOCHS["finetune_epochs"]
    if name not in REGISTRY:
        register(glocalk_model(name=name, l2=choice["l2"], sparsity=choice["sparsity"], conv_axes=choice["conv_axes"],
                               pretrain_epochs=pre, finetune_epochs=fine))
    return name


def trained_predictions(kwargs: dict, seed: int, train: pd.DataFrame, target: pd.DataFrame,
                        device: str) -> tuple[np.ndarray, AutoencoderRecommender, float]:
    """Train one member (AutoencoderRecommender keywords) on `train` and predict `target`'s (user,
    item) pairs, clipped to [1, 5]; users unseen in `train` get its mean rating. Also returns the
    fitted recommender and the training seconds."""
    rec = AutoencoderRecommender(device=device, seed=seed, **kwargs)
    t0 = time.perf_counter()
    rec.fit(train)
    seconds = time.perf_counter() - t0
    return held_out_predictions(rec, train, target, (1.0, 5.0)), rec, round(seconds, 1)


def fit_predict(model: str, seed: int, train: pd.DataFrame, target: pd.DataFrame,
                args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    """One member's predictions of `target` (trained_predictions) and the fit's settings/seconds."""
    epochs = SMOKE_EPOCHS["autorec_epochs"] if args.smoke and model == AUTOREC else None
    pred, rec, seconds = trained_predictions({"model": model, "epochs": epochs}, seed, train, target, args.device)
    settings = dict(rec.settings_)  # GLocal-K's L2 is its entry's own (see glocalk_chosen), not listed here
    return pred, {"seconds": seconds, "settings": settings}


def seed_group_parser(doc: str, per_group: int, smoke: str) -> argparse.ArgumentParser:
    """The arguments of a u1 ensemble bench: device, threads, seed groups, --smoke."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--groups", type=int, default=3, help="seed groups (repeats of the whole procedure)")
    ap.add_argument("--per-group", type=int, default=per_group, help="seeds of each member in a group")
    ap.add_argument("--smoke", action="store_true", help=smoke)
    return ap


def checked_seed_groups(ap: argparse.ArgumentParser) -> argparse.Namespace:
    args = ap.parse_args()
    if args.groups < 1 or args.per_group < 1:
        ap.error("--groups and --per-group must be at least 1")
    return args


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def blend(w: float, g: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.clip(w * g + (1.0 - w) * a, 1, 5)


def run_group(seeds: list[int], members: list[str], fit: pd.DataFrame, val: pd.DataFrame,
              base: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace) -> dict:
    glocalk = members[0]
    # 1. validation: fit part → held-out 5 %; choose w (u1.test not read here)
    vpred: dict[str, list[np.ndarray]] = {m: [] for m in members}
    vrec: dict[str, list[dict]] = {m: [] for m in members}
    vtrue = val["rating"].to_numpy(dtype=float)
    for seed in seeds:
        for m in members:
            p, info = fit_predict(m, seed, fit, val, args)
            vpred[m].append(p)
            vrec[m].append({"seed": seed, "val_rmse": round(rmse(p, vtrue), 4), "seconds": info["seconds"]})
            print(f"  val  seed {seed} {m}: RMSE {rmse(p, vtrue):.4f}, {info['seconds']} s", flush=True)
    vg, va = np.mean(vpred[glocalk], axis=0), np.mean(vpred[AUTOREC], axis=0)
    curve = [round(rmse(blend(w, vg, va), vtrue), 5) for w in W_GRID]
    w = W_GRID[int(np.argmin(curve))]  # first minimum: ties go to the lower w
    print(f"  chosen w (GLocal-K share) {w:.2f}: validation RMSE {min(curve):.4f} "
          f"(GLocal-K mean {curve[-1]:.4f}, autorec mean {curve[0]:.4f})", flush=True)
    # 2. test: all of u1.base → u1.test with the chosen w
    tpred: dict[str, list[np.ndarray]] = {m: [] for m in members}
    trec: dict[str, list[dict]] = {m: [] for m in members}
    users, ttrue = test["user"].to_numpy(), test["rating"].to_numpy(dtype=float)
    settings = {}
    for seed in seeds:
        for m in members:
            p, info = fit_predict(m, seed, base, test, args)
            tpred[m].append(p)
            met = explicit_metrics(users, p, ttrue)
            trec[m].append({"seed": seed, "rmse": met["rmse"], "mae": met["mae"], "seconds": info["seconds"]})
            settings[m] = info["settings"]
            print(f"  test seed {seed} {m}: RMSE {met['rmse']:.4f}, {info['seconds']} s", flush=True)
    tg, ta = np.mean(tpred[glocalk], axis=0), np.mean(tpred[AUTOREC], axis=0)
    combos = {"blend_chosen": w, "glocalk_mean": 1.0, "autorec_mean": 0.0, "blend_even": 0.5}
    test_out = {k: explicit_metrics(users, blend(wk, tg, ta), ttrue) for k, wk in combos.items()}
    print(f"  test blend (w {w:.2f}): RMSE {test_out['blend_chosen']['rmse']:.4f}", flush=True)
    return {"seeds": seeds, "chosen_w": w, "validation": {"w_grid": W_GRID, "rmse_by_w": curve,
                                                          "chosen_rmse": min(curve), "per_seed": vrec},
            "test": {"per_seed": trec, **test_out}, "member_settings": settings}


def bias_baseline(base: pd.DataFrame, test: pd.DataFrame) -> dict:
    """The user+item bias baseline of u1.base on u1.test, as recae.evaluate.evaluate_explicit measures it."""
    umap, imap = IdMap(base["user"]), IdMap(base["item"])
    u, i = umap.index_array(base["user"].to_numpy()), imap.index_array(base["item"].to_numpy())
    b = BiasBaseline().fit(u, i, base["rating"].to_numpy(), len(umap), len(imap))
    pred = b.predict(umap.index_array(test["user"].to_numpy()), imap.index_array(test["item"].to_numpy()))
    return explicit_metrics(test["user"].to_numpy(), pred, test["rating"].to_numpy(dtype=float))


def main() -> None:
    ap = seed_group_parser(__doc__, per_group=3, smoke="1-2 epochs per member, record to a temp file")
    args = checked_seed_groups(ap)
    torch.set_num_threads(args.threads)
    choice = json.loads(GLOCALK_JSON.read_text())["chosen"]
    members = [register_glocalk(choice, args.smoke), AUTOREC]
    base, test = load_ml100k_fold(data_dir(), "u1")
    fit, val = random_split(base, 0.05, seed=0)
    test = test[test["user"].isin(base["user"])].reset_index(drop=True)  # as evaluate_explicit: known users
    t0 = time.perf_counter()
    groups = []
    for g in range(args.groups):
        seeds = list(range(g * args.per_group, (g + 1) * args.per_group))
        print(f"group {g}: seeds {seeds}", flush=True)
        groups.append(run_group(seeds, members, fit, val, base, test, args))
    seconds = round(time.perf_counter() - t0, 1)
    bias = bias_baseline(base, test)

    def spread(vals: list[float]) -> str:
        return f"{median(vals):.4f} ({min(vals):.4f}–{max(vals):.4f})"

    def over_groups(key: str, metric: str) -> list[float]:
        return [gr["test"][key][metric] for gr in groups]

    def singles(m: str, metric: str) -> list[float]:
        return [r[metric] for gr in groups for r in gr["test"]["per_seed"][m]]

    label = {members[0]: "glocalk (chosen)", AUTOREC: "autorec"}
    k = args.per_group
    chosen = ", ".join(f"{gr['chosen_w']:.2f}" for gr in groups)
    rows = [[f"blend, w chosen on validation (per group: {chosen})",
             spread(over_groups("blend_chosen", "rmse")), spread(over_groups("blend_chosen", "mae"))],
            [f"glocalk mean of {k} seeds (w = 1, fixed)", spread(over_groups("glocalk_mean", "rmse")),
             spread(over_groups("glocalk_mean", "mae"))],
            [f"autorec mean of {k} seeds (w = 0, fixed)", spread(over_groups("autorec_mean", "rmse")),
             spread(over_groups("autorec_mean", "mae"))],
            ["even blend w = 0.5 (fixed; reference, not chosen)", spread(over_groups("blend_even", "rmse")),
             spread(over_groups("blend_even", "mae"))]]
    rows += [[f"{label[m]} single seed ({len(singles(m, 'rmse'))} fits)", spread(singles(m, "rmse")),
              spread(singles(m, "mae"))] for m in members]
    rows.append(["bias baseline", f"{bias['rmse']:.4f}", f"{bias['mae']:.4f}"])
    title = (f"ML-100K u1.test, trained on u1.base, {args.groups} group(s) × {k} seed(s) ({args.device}"
             f"{', SMOKE: 1-2 epochs' if args.smoke else ''}): median over groups (min–max); single seeds: "
             "median over all fits")
    table(title, ["model", "RMSE", "MAE"], rows)
    blend_rmse = median(over_groups("blend_chosen", "rmse"))
    doc = {"protocol": __doc__.split("\n\n")[1].strip(),
           "smoke": args.smoke, "device": args.device, "threads": args.threads, "n_groups": args.groups,
           "per_group": k, "validation_split": "random_split(u1.base, 0.05, seed=0)",
           "fit_ratings": len(fit), "validation_ratings": len(val), "test_ratings": len(test),
           "glocalk_chosen_from": GLOCALK_JSON.name, "glocalk_chosen": choice,
           "smoke_epochs": SMOKE_EPOCHS if args.smoke else None,
           "chosen_w": [gr["chosen_w"] for gr in groups],
           "summary": {"blend_median_rmse": blend_rmse,
                       "blend_rmse_range": [min(over_groups("blend_chosen", "rmse")),
                                            max(over_groups("blend_chosen", "rmse"))],
                       "blend_median_mae": median(over_groups("blend_chosen", "mae")),
                       **{f"{key}_median_rmse": median(over_groups(key, "rmse"))
                          for key in ("glocalk_mean", "autorec_mean", "blend_even")},
                       **{f"{label[m].split()[0]}_single_median_rmse": median(singles(m, "rmse")) for m in members},
                       "bias": bias, "bar_rmse": 0.890, "meets_bar": bool(blend_rmse <= 0.890)},
           "groups": groups, "seconds": seconds}
    out = Path(tempfile.gettempdir()) / "recae_u1_ensemble.smoke.json" if args.smoke else OUT
    atomic_write_text(out, json.dumps(doc, indent=2) + "\n")
    print(f"bar: ensemble u1 RMSE {blend_rmse:.4f} (<= 0.890 needed){' [smoke: not a result]' if args.smoke else ''}; "
          f"{seconds} s; record {out}", flush=True)


if __name__ == "__main__":
    main()
