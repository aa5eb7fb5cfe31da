"""NAB with and without online adaptation (`--adapt`, tsad.adapt), settings chosen on the tuning half.

Protocol, fixed before any result was seen: the nab preset (its alerting as chosen by
bench/tsad_nab_protocol.py), trained on each file's probationary 15 %, seeds 0, 1, 2; NAB allows
online learning (each row seen once, in order), so the adapting detector scores each whole file as
`score`/`monitor --adapt` would. The grid: adaptation off, and three settings of (rows between
rounds, learning rate) with 5 Adam steps of 32 windows per round over the last 1,000 rows. The
setting with the best median standard score on the TUNING half (NAB_SPLIT_RULE: alternate files
by name within each category) is chosen; reported for "off" and the chosen setting: the evaluation
half at the tuning half's thresholds (the honest figure) and the whole corpus at the same
thresholds, median of the seeds with the range. Every setting's figures go to the JSON.

Usage: AE_DATA_DIR=../shared/data python bench/tsad_nab_adapt.py [--seeds 0 1 2] [--jobs 2]
       [--device cpu] [--json bench/tsad_nab_adapt.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from _common import table

from core.jobs.atomic import atomic_write_text

GRID: dict[str, dict | None] = {
    "off": None,
    "every250-lr1e-4": {"every": 250, "lr": 1e-4},
    "every250-lr1e-3": {"every": 250, "lr": 1e-3},
    "every100-lr1e-3": {"every": 100, "lr": 1e-3},
}


def one(name: str, seed: int, device: str) -> dict:
    """The whole NAB protocol for one setting and seed (a worker process, one torch thread)."""
    import torch

    from tsad.config import preset
    from tsad.evaluate import run_benchmark

    torch.set_num_threads(1)
    cfg = preset("nab")
    setting = GRID[name]
    if setting is not None:
        cfg = cfg.updated({f"adapt.{k}": v for k, v in setting.items()})
    t0 = time.perf_counter()
    result = run_benchmark("nab", cfg, seed=seed, device=device, adapt=setting is not None)
    return {"setting": name, "seed": seed, "tuning": result.extra["tuning"]["scores"],
            "evaluation": result.metrics, "all": result.extra["metrics_all"],
            "ablation_without_level": result.extra["ablations"]["ae_without_level"],
            "gaussian_evaluation": result.baselines["windowed_gaussian"], "seconds": round(time.perf_counter() - t0, 1)}


def summary(runs: list[dict], part: str, key: str = "nab_standard") -> dict:
    values = sorted(r[part][key] for r in runs)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    tasks = [(name, seed) for name in GRID for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        runs = list(pool.map(one, *zip(*tasks), [args.device] * len(tasks)))
    by = {name: [r for r in runs if r["setting"] == name] for name in GRID}
    tuning = {name: summary(rs, "tuning") for name, rs in by.items()}
    adapting = [n for n in GRID if GRID[n] is not None]
    chosen = max(adapting, key=lambda n: (tuning[n]["median"], -adapting.index(n)))

    def cell(s: dict) -> str:
        return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"

    rows = [[name + (" (chosen)" if name == chosen else ""), cell(tuning[name]), cell(summary(by[name], "evaluation")),
             cell(summary(by[name], "all")), cell(summary(by[name], "ablation_without_level"))] for name in GRID]
    table(f"NAB standard, with and without --adapt (median of seeds {args.seeds}, range; {args.device})",
          ["setting", "tuning half (chooses)", "evaluation half", "whole corpus", "eval half, no level check"], rows)
    doc = {"protocol": __doc__.split("Usage:")[0].strip(), "grid": GRID, "seeds": args.seeds, "device": args.device,
           "chosen": chosen, "chosen_by": "best median tuning-half standard score among the adapting settings",
           "summary": {name: {part: summary(by[name], part) for part in ("tuning", "evaluation", "all")}
                       for name in GRID},
           "adapt_beats_off_on_evaluation": summary(by[chosen], "evaluation")["median"]
           > summary(by["off"], "evaluation")["median"],
           "runs": runs, "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_text(args.json, json.dumps(doc, indent=1) + "\n")
    print(f"chosen on the tuning half: {chosen}; wrote {args.json}")


if __name__ == "__main__":
    main()
