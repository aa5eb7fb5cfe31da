"""GLocal-K (recae.glocalk) on ML-100K u1: settings chosen on a validation split of u1.base only,
then u1.test RMSE beside autorec and the bias baseline of the same run.

1. Validation: a seeded 5 % of u1.base's ratings (random_split, seed 0, as bench/recae_explicit.py)
   is held out; every grid point trains on the other 95 % with the held-out RMSE monitored after
   each epoch (10 L-BFGS iterations): pre-training keeps its best epoch (stopping after 3 epochs
   without improvement, at most --max-pretrain), fine-tuning starts from there and keeps its best
   epoch (at most --max-finetune; dropped if it never beats pre-training alone). The grid point with
   the lowest validation RMSE wins, with its kept epochs of each phase. u1.test is never read here.
2. Test: the chosen setting (epochs included, nothing re-tuned) is trained on all of u1.base for
   each seed and scored on u1.test; autorec (its registered recipe, l2 0.003 as the recommender's
   default, chosen by bench/recae_explicit.py) and the user+item bias baseline in the same run.
   Median over seeds and the spread (min–max); training seconds.
Every setting tried, its validation RMSE and kept epochs, and the choice go to bench/recae_glocalk.json.

The user-based member of bench/recae_u1_stack.py (the same network with rows = users) is tuned the
same way on the same split: --orientation users --grid users --tune-only --out
bench/recae_glocalk_users.json (step 1 only; its record is separate).

Usage: AE_DATA_DIR=../shared/data python bench/recae_glocalk.py [--grid small|none|users] [--seeds 0 1 2]
       [--device cpu] [--tune-only] [--threads 2] [--orientation items|users] [--out JSON]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import data_dir, median, table

from core.train import TrainConfig
from recae.datasets import load_ml100k_fold
from recae.evaluate import evaluate_explicit
from recae.glocalk import GLocalKTrainer
from recae.interactions import Interactions, random_split
from recae.models import REGISTRY, SparseRows, glocalk_model, register
from recae.recommender import AutoencoderRecommender

OUT = Path(__file__).with_name("recae_glocalk.json")
GRIDS = {  # (l2, sparsity, conv_axes)
    # round 1 (patience 3, at most 40 + 30 epochs) tried l2 2.5e-4/5e-4/1e-3/2e-3 × sparsity 1.5e-7/1.5e-6:
    # the record keeps it under "earlier_rounds"; round 2 (this grid) refines around its best
    "round1": [(l2, sp, "users") for l2, sp in itertools.product((2.5e-4, 5e-4, 1e-3, 2e-3), (1.5e-7, 1.5e-6))]
    + [(5e-4, 1.5e-7, "both")],
    "small": [(l2, sp, "users") for l2, sp in itertools.product((3.5e-4, 5e-4, 7e-4, 1e-3), (1.5e-7, 5e-7))]
    + [(5e-4, 1.5e-7, "both")],
    "none": [],
    # GLocal-K's network on the transposed matrix (rows = users; --orientation users, --tune-only):
    # the user-based member of bench/recae_u1_stack.py, which first reused the item-based choice
    "users": [(l2, 5e-7, "users") for l2 in (2.5e-4, 5e-4, 1e-3, 2e-3)],
}


def validation_data(seed: int = 0, orientation: str = "items"):  # noqa: ANN201
    """(fit frame, the network's rows of the fit matrix, val column idx, val row idx, val ratings,
    global mean): rows are items (the registered glocalk) or, with orientation "users", users."""
    base, _ = load_ml100k_fold(data_dir(), "u1")
    fit, val = random_split(base, 0.05, seed=seed)
    data = Interactions.from_frame(fit)
    u = data.user_map.index_array(val["user"].to_numpy())
    i = data.item_map.index_array(val["item"].to_numpy())
    mean = float(fit["rating"].mean())
    if orientation == "users":
        return fit, data.matrix.tocsr(), i, u, val["rating"].to_numpy(), mean
    return fit, data.matrix.T.tocsr(), u, i, val["rating"].to_numpy(), mean


def tune_one(l2: float, sparsity: float, conv_axes: str, args: argparse.Namespace, val_data) -> dict:  # noqa: ANN001
    """Train one grid point on the fit part with validation RMSE after each epoch (whole matrix at once)."""
    fit, items, vu, vi, vr, mean = val_data  # items: the rows; vu, vi: column and row indices
    known = (vu >= 0) & (vi >= 0)
    entry = glocalk_model(l2=l2, sparsity=sparsity, conv_axes=conv_axes)
    torch.manual_seed(args.tune_seed)
    model = entry.build(items.shape[1], entry.hidden)
    device = torch.device(args.device)
    x_full = torch.from_numpy(items.toarray().astype(np.float32)).to(device)

    def val_rmse(net: torch.nn.Module) -> float:
        pred = np.full(len(vr), mean)
        out = net.reconstruct(x_full).float().cpu().numpy()  # rows × columns
        pred[known] = out[vi[known], vu[known]]
        return float(np.sqrt(np.mean((np.clip(pred, 1, 5) - vr) ** 2)))

    cfg = TrainConfig(epochs=args.max_pretrain + args.max_finetune, optimizer="lbfgs", lr=1.0, seed=args.tune_seed,
                      device=args.device, description="glocalk tuning")
    trainer = GLocalKTrainer(cfg, entry.objective(0.0, cfg.epochs),
                             pretrain_share=args.max_pretrain / (args.max_pretrain + args.max_finetune),
                             patience=args.patience)
    t0 = time.perf_counter()
    history = trainer.fit(model, SparseRows(items, entry.inputs), val=val_rmse)
    phases = [p["phase"] for p in history.parts]
    pre_curve = [round(v, 4) for v, p in zip(history.val_loss, phases) if p == 1.0]
    fine_curve = [round(v, 4) for v, p in zip(history.val_loss, phases) if p == 2.0]
    return {"l2": l2, "sparsity": sparsity, "conv_axes": conv_axes,
            "val_rmse": round(min(history.val_loss), 4), "pretrain_epochs": trainer.kept[0],
            "finetune_epochs": trainer.kept[1], "best_pretrain_val_rmse": min(pre_curve),
            "pretrain_curve": pre_curve, "finetune_curve": fine_curve,
            "seconds": round(time.perf_counter() - t0, 1), "device": args.device}


def tune(args: argparse.Namespace) -> dict:
    val_data = validation_data(orientation=args.orientation)
    rows: list[dict] = []
    for l2, sparsity, conv_axes in GRIDS[args.grid]:
        r = tune_one(l2, sparsity, conv_axes, args, val_data)
        rows.append(r)
        args.out.write_text(json.dumps({"tried": rows}, indent=2) + "\n")  # kept as it goes
        print(f"l2 {l2:g} sparsity {sparsity:g} conv {conv_axes}: val RMSE {r['val_rmse']:.4f} "
              f"(pre-train {r['pretrain_epochs']} epochs -> {r['best_pretrain_val_rmse']:.4f}, fine-tune "
              f"{r['finetune_epochs']}) {r['seconds']} s\n  pre {r['pretrain_curve']}\n  fine {r['finetune_curve']}",
              flush=True)
    # conv along users only: exact whatever rows the recommender feeds (recae.glocalk); "both" is shown
    # for comparison and not eligible
    eligible = [r for r in rows if r["conv_axes"] == "users"]
    chosen = min(eligible, key=lambda r: r["val_rmse"])
    table("GLocal-K settings on the validation split of u1.base (5 % of its ratings; seed-0 init)",
          ["l2", "sparsity", "conv", "validation RMSE", "pre-train epochs kept", "pre-train only val RMSE",
           "fine-tune epochs kept", "train s"],
          [[f"{r['l2']:g}", f"{r['sparsity']:g}", r["conv_axes"], r["val_rmse"], r["pretrain_epochs"],
            r["best_pretrain_val_rmse"], r["finetune_epochs"], r["seconds"]] for r in rows])
    choice = {k: chosen[k] for k in ("l2", "sparsity", "conv_axes", "pretrain_epochs", "finetune_epochs",
                                     "val_rmse")}
    print(f"chosen: {choice}\n", flush=True)
    doc = {"protocol": f"rows = {args.orientation}; "
                       "validation = random_split(u1.base, 0.05, seed=0); an epoch = 10 L-BFGS iterations; "
                       f"at most {args.max_pretrain} pre-train + {args.max_finetune} fine-tune epochs, each phase "
                       f"keeps its best validation epoch (patience {args.patience}); "
                       "conv 'both' not eligible (see recae.glocalk)",
           "tried": rows, "chosen": choice}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return choice


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grid", choices=tuple(GRIDS), default="small")
    ap.add_argument("--max-pretrain", type=int, default=60)
    ap.add_argument("--max-finetune", type=int, default=30)
    ap.add_argument("--patience", type=int, default=6, help="epochs without a better validation RMSE before a "
                    "phase stops")
    ap.add_argument("--tune-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tune-only", action="store_true")
    ap.add_argument("--orientation", choices=("items", "users"), default="items",
                    help="the network's rows (users: tuning only, with --out elsewhere)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help="the JSON record (default bench/recae_glocalk.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.orientation == "users" and (not args.tune_only or args.out == OUT):
        ap.error("--orientation users tunes only: give --tune-only and an --out other than the item record")
    if args.grid == "none":  # the registered glocalk's settings, as recorded
        choice = json.loads(args.out.read_text())["chosen"]
    else:
        choice = tune(args)
    if args.tune_only:
        return
    name = "glocalk-chosen"
    if name not in REGISTRY:
        register(glocalk_model(name=name, l2=choice["l2"], sparsity=choice["sparsity"], conv_axes=choice["conv_axes"],
                               pretrain_epochs=choice["pretrain_epochs"], finetune_epochs=choice["finetune_epochs"]))
    train, test = load_ml100k_fold(data_dir(), "u1")
    results: dict[str, list[dict]] = {name: [], "autorec": []}
    bias = None
    for seed in args.seeds:
        for model in results:
            r = evaluate_explicit(AutoencoderRecommender(model=model, device=args.device, seed=seed), train, test)
            results[model].append({"rmse": r["metrics"]["rmse"], "mae": r["metrics"]["mae"],
                                   "seconds": r["train_seconds"]})
            bias = r["baselines"]["bias"]
            print(f"seed {seed} {model}: u1 RMSE {r['metrics']['rmse']:.4f}, {r['train_seconds']} s", flush=True)

    def cell(m: str, k: str) -> str:
        vals = [r[k] for r in results[m]]
        return f"{median(vals):.4f} ({min(vals):.4f}–{max(vals):.4f})"

    rows = [[m if m != name else "glocalk (chosen)", cell(m, "rmse"), cell(m, "mae"),
             f"{median([r['seconds'] for r in results[m]]):.1f}"] for m in results]
    rows.append(["bias baseline", f"{bias['rmse']:.4f}", f"{bias['mae']:.4f}", "-"])
    table(f"ML-100K u1.test, trained on u1.base, seeds {' '.join(map(str, args.seeds))} ({args.device}): "
          "median (min–max)", ["model", "RMSE", "MAE", "train s (median)"], rows)
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc["test"] = {"device": args.device, "seeds": args.seeds, "per_seed": results, "bias": bias,
                   "glocalk_median_rmse": median([r["rmse"] for r in results[name]])}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"bar: glocalk u1 RMSE {doc['test']['glocalk_median_rmse']:.4f} (<= 0.890 needed)")


if __name__ == "__main__":
    main()
