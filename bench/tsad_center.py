"""Centred windows (network.center) as an ablation on NAB and SKAB, chosen on the tuning parts only.

Protocol, fixed before any result was seen: each benchmark's preset as it is (`ae tsad train
--preset nab|skab`), with and without network.center (the network sees each window minus its
per-channel mean and adds it back, so it judges shape and not level), seeds 0, 1, 2, one torch
thread per process. NAB: `run_benchmark("nab")`, the tuning and evaluation halves of
tsad.evaluate.nab_halves, thresholds from the tuning half; the setting with the better median
tuning-half standard score wins. SKAB: every file fitted on its first 400 rows and scored, as
`evaluate --benchmark skab` does; tsad.evaluate.skab_halves; the setting with the better median
tuning-part F1 among those with tuning FAR <= 20 % wins (the better F1 when neither meets the cap).
MSL (added in a second run, after the NAB and SKAB tables were seen; same settings, same seeds):
each channel fitted on train/ and scored on test/ as `evaluate --benchmark msl` does, PR-AUC and
VUS-PR over tsad.evaluate.msl_halves' tuning and evaluation channels, beside PCA smoothed the same
way (deterministic); the better median tuning PR-AUC wins.
Reported: both settings on the tuning part, the evaluation part and the whole corpus (median of the
seeds with the range), and which one the tuning part chose. A preset changes only if the tuning
part chooses centring.

Usage: AE_DATA_DIR=../shared/data python bench/tsad_center.py [--seeds 0 1 2] [--jobs 2]
       [--benchmarks nab skab msl] [--json bench/tsad_center.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from _common import data_dir, median_range, table
from tsad_msl_protocol import _pairs as msl_channel_pairs
from tsad_skab_protocol import FAR_CAP, Runs

from core.jobs.atomic import atomic_write_text
from tsad.evaluate import _point_metrics, msl_halves, skab_halves, skab_pairs

SETTINGS: dict[str, dict] = {"preset": {}, "preset + centred windows": {"network.center": True}}


def nab_one(name: str, seed: int) -> dict:
    """NAB end to end for one setting and seed (a worker process, one torch thread)."""
    import torch

    from tsad.config import preset
    from tsad.evaluate import run_benchmark

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = run_benchmark("nab", preset("nab").updated(SETTINGS[name]), seed=seed, device="cpu")
    return {"setting": name, "seed": seed, "tuning": result.extra["tuning"]["scores"]["nab_standard"],
            "evaluation": result.metrics["nab_standard"], "all": result.extra["metrics_all"]["nab_standard"],
            "seconds": round(time.perf_counter() - t0, 1)}


def run_nab(seeds: list[int], pool: ProcessPoolExecutor) -> dict:
    tasks = [(name, seed) for name in SETTINGS for seed in seeds]
    runs = list(pool.map(nab_one, *zip(*tasks)))
    by = {name: [r for r in runs if r["setting"] == name] for name in SETTINGS}
    chosen = max(SETTINGS, key=lambda n: (statistics.median(r["tuning"] for r in by[n]), n == "preset"))
    rows = [[name + (" (chosen)" if name == chosen else ""), *(median_range([r[part] for r in by[name]], 2)
                                                               for part in ("tuning", "evaluation", "all"))]
            for name in SETTINGS]
    table(f"NAB standard score, centred windows as an ablation (seeds {seeds}, median and range)",
          ["setting", "tuning half (chooses)", "evaluation half", "whole corpus"], rows)
    return {"chosen": chosen, "runs": runs}


def run_skab(seeds: list[int], pool: ProcessPoolExecutor) -> dict:
    names = [test.name for _, test in skab_pairs(data_dir())]
    tune, evaluation = skab_halves(names)
    runs = Runs()
    runs.run([(SETTINGS[n], s, f) for n in SETTINGS for s in seeds for f in names], pool)
    figures = {n: {part: [runs.metrics(SETTINGS[n], s, files) for s in seeds]
                   for part, files in (("tuning", tune), ("evaluation", evaluation), ("all", names))}
               for n in SETTINGS}

    def rank(n: str) -> tuple:
        f1 = statistics.median(m["f1"] for m in figures[n]["tuning"])
        far = statistics.median(m["far"] for m in figures[n]["tuning"])
        return (far <= FAR_CAP, f1, n == "preset")

    chosen = max(SETTINGS, key=rank)
    rows = []
    for n in SETTINGS:
        row = [n + (" (chosen)" if n == chosen else "")]
        for part in ("tuning", "evaluation", "all"):
            row += [median_range([m["f1"] for m in figures[n][part]]),
                    median_range([m["far"] for m in figures[n][part]], 3)]
        rows.append(row)
    table(f"SKAB, centred windows as an ablation (seeds {seeds}, median and range)",
          ["setting", "tuning F1 (chooses)", "tuning FAR", "evaluation F1", "evaluation FAR", "all F1", "all FAR"],
          rows)
    return {"chosen": chosen, "tuning_files": tune, "evaluation_files": evaluation, "figures": figures}


def msl_one(name: str, seed: int, chan: str) -> tuple[str, int, str, list[float]]:
    """One MSL channel fitted and scored with the msl preset and a setting (a worker, one thread)."""
    import numpy as np
    import torch

    from tsad.config import preset
    from tsad.detector import WindowDetector

    torch.set_num_threads(1)
    train, test = msl_channel_pairs()[chan]
    det = WindowDetector(preset("msl").updated(SETTINGS[name]), seed=seed, device="cpu").fit(train)
    return name, seed, chan, np.nan_to_num(det.raw_score(test).score, nan=0.0).tolist()


def run_msl(seeds: list[int], pool: ProcessPoolExecutor) -> dict:
    import numpy as np

    from tsad.baselines import PCABaseline
    from tsad.config import preset
    from tsad.detector import trailing_mean

    pairs = msl_channel_pairs()
    channels = sorted(pairs)
    tune, evaluation = msl_halves(channels)
    tasks = [(n, s, c) for n in SETTINGS for s in seeds for c in channels]
    scores = {(n, s, c): np.asarray(v) for n, s, c, v in pool.map(msl_one, *zip(*tasks))}
    labels = {c: pairs[c][1].labels.astype(int) for c in channels}
    span = preset("msl").scoring.smooth
    pca = {}
    for c in channels:
        train, test = pairs[c]
        pca[c] = np.nan_to_num(trailing_mean(PCABaseline().fit(train.values).score(test.values), span), nan=0.0)

    def metrics(get, chans: list[str]) -> dict:  # noqa: ANN001 - get(channel) -> scores
        m = _point_metrics(np.concatenate([labels[c] for c in chans]), np.concatenate([get(c) for c in chans]), None)
        return {"pr_auc": m["pr_auc"], "vus_pr": m["vus_pr"]}

    parts = {"tuning": tune, "evaluation": evaluation}
    figures = {n: {part: [metrics(lambda c, n=n, s=s: scores[(n, s, c)], chans) for s in seeds]
                   for part, chans in parts.items()} for n in SETTINGS}
    base = {part: metrics(lambda c: pca[c], chans) for part, chans in parts.items()}
    chosen = max(SETTINGS, key=lambda n: (statistics.median(m["pr_auc"] for m in figures[n]["tuning"]),
                                          n == "preset"))
    rows = []
    for n in SETTINGS:
        row = [n + (" (chosen)" if n == chosen else "")]
        for part in parts:
            pr = [m["pr_auc"] for m in figures[n][part]]
            vus = [m["vus_pr"] for m in figures[n][part]]
            row += [f"{median_range(pr)}; {statistics.median(pr) / base[part]['pr_auc']:.2f}x",
                    f"{median_range(vus)}; {statistics.median(vus) / base[part]['vus_pr']:.2f}x"]
        rows.append(row)
    rows.append([f"PCA smoothed {span} (deterministic)"] + [f"{base[p][k]:.4f}" for p in parts
                                                            for k in ("pr_auc", "vus_pr")])
    table(f"MSL, centred windows as an ablation (seeds {seeds}, median and range; x = ratio to smoothed PCA)",
          ["setting", "tuning PR-AUC (chooses)", "tuning VUS-PR", "evaluation PR-AUC", "evaluation VUS-PR"], rows)
    return {"chosen": chosen, "tuning_channels": tune, "evaluation_channels": evaluation, "figures": figures,
            "pca_smoothed": base}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--benchmarks", nargs="+", default=["nab", "skab"])
    ap.add_argument("--json", type=Path, default=Path(__file__).with_suffix(".json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    doc: dict = {"protocol": __doc__.split("Usage:")[0].strip(), "settings": SETTINGS, "seeds": args.seeds}
    if args.json.exists():  # a run for other benchmarks keeps the ones already recorded
        doc = {**json.loads(args.json.read_text()), **doc}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        if "skab" in args.benchmarks:
            doc["skab"] = run_skab(args.seeds, pool)
        if "nab" in args.benchmarks:
            doc["nab"] = run_nab(args.seeds, pool)
        if "msl" in args.benchmarks:
            doc["msl"] = run_msl(args.seeds, pool)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(args.json, json.dumps(doc, indent=1, default=float) + "\n")
    print(f"wrote {args.json} in {doc['seconds']:.0f} s")


if __name__ == "__main__":
    main()
