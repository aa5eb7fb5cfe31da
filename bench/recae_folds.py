"""Top-N with power: ML-100K 5 user folds (recae.protocol; every user with 5+ positives tested once),
every implicit autoencoder and every baseline tuned on validation users only, mean ± std over folds,
and a paired per-user test of the best autoencoder against the best baseline.

The folds are fixed (split seed 0); the autoencoders are trained with each of --seeds and reported
as the median over seeds of the fold mean (and of the fold std), with the seeds' range of NDCG@100;
the baselines are deterministic and run once. The paired test uses the median seed's run.
Seeds are independent runs; --jobs N runs N of them at once in separate processes.
Usage: python bench/recae_folds.py [--seeds 0,1,2] [--device cpu] [--jobs 1] [--json bench/recae_folds.json]"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from _common import data_dir, table

from core.jobs.atomic import atomic_write_text
from recae.datasets import load_ml100k
from recae.evaluate import models_for
from recae.protocol import ProtocolResult, run_protocol, user_folds
from recae.recommender import AutoencoderRecommender

SHOWN = ("recall@20", "recall@50", "ndcg@100")


def _setting(chosen: list[dict]) -> str:
    """The settings chosen over the folds, most frequent first, with how many folds chose each."""
    labels = [", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items()) or "-"
              for c in chosen]
    return "; ".join(f"{lab} ×{labels.count(lab)}" for lab in dict.fromkeys(sorted(labels, key=labels.count,
                                                                                     reverse=True)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", default=str(Path(__file__).with_name("recae_folds.json")))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    splits = user_folds(load_ml100k(data_dir()), seed=0)
    models = models_for("all", "folds")
    t0 = time.perf_counter()
    base = run_protocol(splits, [], lambda _name: None)
    runs: dict[int, ProtocolResult] = {}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_seed, seed, models, args.device): seed for seed in seeds}
        for fut in as_completed(futures):  # the report is rewritten after every seed: a cut-short run leaves one
            seed = futures[fut]
            runs[seed] = fut.result()
            print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
            report(splits, models, base, dict(sorted(runs.items())), args.json, t0)


def run_seed(seed: int, models: list[str], device: str) -> ProtocolResult:
    """Every autoencoder on every fold with one seed (in its own process when --jobs > 1)."""
    import torch

    torch.set_num_threads(2)
    splits = user_folds(load_ml100k(data_dir()), seed=0)
    return run_protocol(splits, models, lambda name: AutoencoderRecommender(model=name, device=device, seed=seed),
                        baselines=())


def report(splits: list, models: list[str], base: ProtocolResult, runs: dict[int, ProtocolResult], path: str,
           t0: float) -> None:
    """The markdown table and paired comparison of the seeds run so far, and the JSON beside them."""
    seeds = list(runs)
    rows, doc = [], {"protocol": "ml-100k, 5 user folds (split seed 0), tuned on validation users (ndcg@100)",
                     "seeds": seeds, "models": {}, "baselines": base.to_dict()}
    for name in models:
        per_seed = {s: r.results()[name] for s, r in runs.items()}
        med = {k: (statistics.median(v[k]["mean"] for v in per_seed.values()),
                   statistics.median(v[k]["std"] for v in per_seed.values())) for k in SHOWN}
        nd = [v["ndcg@100"]["mean"] for v in per_seed.values()]
        chosen = [c for r in runs.values() for c in r.tuning()[name]["chosen"]]
        rows.append([name, *[f"{m:.4f} ± {s:.4f}" for m, s in med.values()], f"{min(nd):.4f}–{max(nd):.4f}",
                     f"epochs {min(c['epochs'] for c in chosen)}–{max(c['epochs'] for c in chosen)} "
                     "(best validation epoch)", f"{statistics.median(r.seconds()[name] for r in runs.values()):.0f}"])
        doc["models"][name] = {"per_seed": {str(s): {"results": r.results()[name], "tuning": r.tuning()[name]}
                                            for s, r in runs.items()}}
    results = base.results()
    for name, m in results.items():
        rows.append([name, *[f"{m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in SHOWN], "deterministic",
                     _setting(base.tuning()[name]["chosen"]), f"{base.seconds()[name]:.0f}"])
    table(f"recae top-N, ML-100K 5 user folds ({splits and sum(len(set(s.test_fold_in['user'])) for s in splits)} "
          f"test users), mean ± std over folds; autoencoders: median over seeds {','.join(map(str, seeds))}",
          ["model", *SHOWN, "ndcg@100 over seeds", "tuned setting (folds)", "seconds (5 folds)"], rows)

    best_ae = max(models, key=lambda n: statistics.median(r.mean(n) for r in runs.values()))
    best_base = base.best("baseline")
    lines = []
    order = sorted(runs, key=lambda s: runs[s].mean(best_ae))
    for seed in order:
        combined = ProtocolResult(folds=len(splits), runs={best_ae: runs[seed].runs[best_ae],
                                                           best_base: base.runs[best_base]},
                                  kinds={best_ae: "autoencoder", best_base: "baseline"})
        p = combined.paired()
        doc["models"][best_ae]["per_seed"][str(seed)]["paired"] = p
        lines.append((seed, p))
    seed, p = lines[len(lines) // 2]
    doc["paired"] = p | {"seed": seed}
    print(f"paired ndcg@100 ({p['users']} test users pooled over the folds, seed {seed} = median seed): "
          f"{best_ae} − {best_base} = {p['mean_difference']:+.4f} (95% paired-bootstrap CI {p['ci95'][0]:+.4f} … "
          f"{p['ci95'][1]:+.4f}), Wilcoxon signed-rank p = {p['p_value']:.3g}")
    for s, q in lines:
        print(f"  seed {s}: {q['mean_difference']:+.4f} (CI {q['ci95'][0]:+.4f} … {q['ci95'][1]:+.4f}), "
              f"p = {q['p_value']:.3g}")
    atomic_write_text(path, json.dumps(doc, indent=2))
    print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
