"""NAB with a tuning half and an evaluation half (issue 11's honest protocol, for the alerting).

Split rule, fixed before any result was seen: within each NAB category (the folder of a file),
the files sorted by name alternate, tuning (1st, 3rd, …) and evaluation (2nd, 4th, …). Every file's
detector is the nab preset's (trained on the file's probationary 15 %, seeds 0, 1, 2). On the
tuning half only, a grid of adaptive-alerting settings (history `long`, current-surprise `short`,
the level check on or off) is scored, and the setting with the best median (over seeds) standard
NAB score is chosen; its corpus threshold per profile is also taken from the tuning half. Reported:
the evaluation half with the tuning half's setting and threshold (the honest figure), the whole
corpus with the same (the tuning half is in it, so it is partly optimistic), and, labelled as such,
each with NAB's own convention (threshold optimised on the scored files). NAB's windowed gaussian
is scored the same ways. Every figure is the median over the three seeds, with the range.
Usage: python bench/tsad_nab_protocol.py [--seeds 0,1,2] [--jobs 2] [--json bench/tsad_nab_protocol.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from _common import data_dir, table

from core.jobs.atomic import atomic_write_text
from tsad import metrics as M
from tsad.alerting import AdaptiveAlerting
from tsad.baselines import WindowedGaussian
from tsad.config import preset
from tsad.datasets import iter_nab
from tsad.evaluate import nab_halves

GRID = [{"long": lg, "short": sh, "level": lv} for lg, sh, lv in itertools.product((500, 1000, 2000), (1, 5),
                                                                                    (True, False))]
PROFILES = {"standard": "standard", "low_fp": "reward_low_FP_rate", "low_fn": "reward_low_FN_rate"}


def split(names: list[str]) -> tuple[list[str], list[str]]:
    """The documented rule (tsad.evaluate.NAB_SPLIT_RULE): alternate files by name within each category."""
    return nab_halves(names)


def raw_scores(name: str, seed: int, changes: dict | None = None) -> tuple[str, int, np.ndarray, np.ndarray]:
    """One file's raw error and calibrated surprise from the nab preset's detector, with `changes`
    (dotted config fields, e.g. {"window": 64}) applied (a worker)."""
    import torch

    from tsad.detector import WindowDetector

    torch.set_num_threads(1)
    series = next(s for s in iter_nab(data_dir()) if s.name == name)
    p = M.probation_rows(len(series))
    det = WindowDetector(preset("nab").updated(changes or {}), seed=seed, device="cpu").fit(series.values[:p])
    raw = det.score(series.values)
    return name, seed, raw.score, det.calibrator_.surprise(raw.score)


def score_all(names: list[str], seeds: list[int], jobs: int,
              changes: dict | None = None) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """Every (file, seed) trained on its probation and scored, in `jobs` processes: (score, surprise)."""
    todo = [(n, s, changes) for s in seeds for n in names]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return {(name, seed): (score, surprise) for name, seed, score, surprise in pool.map(raw_scores, *zip(*todo))}


def summary(per_seed: list[dict[str, float]]) -> dict:
    """Median, range (min, max) and the per-seed figures of each key."""
    return {"median": {k: statistics.median(r[k] for r in per_seed) for k in per_seed[0]},
            "range": {k: (min(r[k] for r in per_seed), max(r[k] for r in per_seed)) for k in per_seed[0]},
            "per_seed": per_seed}


def alerting(setting: dict, series, score: np.ndarray, surprise: np.ndarray) -> np.ndarray:  # noqa: ANN001
    cfg = dataclasses.replace(preset("nab").alerting, mode="adaptive", **setting)
    p = M.probation_rows(len(series))
    return np.nan_to_num(AdaptiveAlerting(cfg, max(100, p)).apply(score, surprise, series.values, {})[0], nan=0.0)


def fixed(files: list[M.NabFile], profile: str, threshold: float) -> float:
    """The normalised NAB score of `files` at a given threshold (not optimised on them)."""
    prof = M.PROFILES[profile]
    raw = M.nab_scores_at(files, np.array([threshold]), prof)[0]
    null, perfect = M.nab_bounds(files, prof)
    return 100 * (raw - null) / (perfect - null)


def scores(files_by: dict[str, M.NabFile], tune: list[str], evaluate: list[str]) -> dict[str, float]:
    """The four figures of one detector: threshold from the tuning half, or optimised on the scored files."""
    out = {}
    for short, profile in PROFILES.items():
        tuned, th = M.nab_corpus_score([files_by[n] for n in tune], profile)
        out[f"tuning_{short}"] = tuned
        out[f"evaluation_{short}"] = fixed([files_by[n] for n in evaluate], profile, th)
        out[f"corpus_{short}"] = fixed(list(files_by.values()), profile, th)
        out[f"evaluation_{short}_own_threshold"] = M.nab_corpus_score([files_by[n] for n in evaluate], profile)[0]
        out[f"corpus_{short}_own_threshold"] = M.nab_corpus_score(list(files_by.values()), profile)[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default=str(Path(__file__).with_name("tsad_nab_protocol.json")))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    series = {s.name: s for s in iter_nab(data_dir())}
    tune, evaluate = split(list(series))
    raw = score_all(list(series), seeds, args.jobs)
    print(f"{len(series)} files × {len(seeds)} seeds trained and scored ({time.perf_counter() - t0:.0f} s)",
          flush=True)

    def files(setting: dict, seed: int, names: list[str]) -> list[M.NabFile]:
        return [M.NabFile(alerting(setting, series[n], *raw[(n, seed)]), series[n].windows) for n in names]

    grid = []
    for setting in GRID:  # tuning half only
        per_seed = [M.nab_corpus_score(files(setting, s, tune), "standard")[0] for s in seeds]
        grid.append({"setting": setting, "tuning_standard_median": statistics.median(per_seed),
                     "per_seed": per_seed})
        print(f"  {setting}: tuning-half standard {statistics.median(per_seed):.2f}", flush=True)
    chosen = max(grid, key=lambda g: g["tuning_standard_median"])["setting"]

    runs = {"autoencoder (chosen alerting)": [], "autoencoder, level check off (ablation)": []}
    for seed in seeds:
        for label, setting in (("autoencoder (chosen alerting)", chosen),
                               ("autoencoder, level check off (ablation)", {**chosen, "level": False})):
            runs[label].append(scores({n: f for n, f in zip(series, files(setting, seed, list(series)))},
                                      tune, evaluate))
    gauss = {n: M.NabFile(WindowedGaussian().score(s.values), s.windows) for n, s in series.items()}
    runs["windowed gaussian (NAB's)"] = [scores(gauss, tune, evaluate)]

    doc = {"rule": __doc__.split("Usage:")[0].strip(), "tuning_files": tune, "evaluation_files": evaluate,
           "grid": grid, "chosen": chosen, "seeds": seeds, "results": {}}
    rows = []
    for label, per_seed in runs.items():
        doc["results"][label] = summary(per_seed)
        med, rng = doc["results"][label]["median"], doc["results"][label]["range"]

        keys = ("evaluation_standard", "evaluation_low_fp", "evaluation_low_fn", "corpus_standard",
                "evaluation_standard_own_threshold", "corpus_standard_own_threshold")
        rows.append([label, *[f"{med[k]:.2f}" + (f" ({rng[k][0]:.2f}–{rng[k][1]:.2f})" if len(per_seed) > 1 else "")
                              for k in keys]])
    table(f"NAB, settings and thresholds from the tuning half ({len(tune)} files), evaluation half "
          f"({len(evaluate)} files); chosen alerting {chosen}; median over seeds {args.seeds} (range)",
          ["detector", "evaluation standard", "evaluation low FP", "evaluation low FN", "whole corpus standard",
           "evaluation, own threshold (optimistic)", "whole corpus, own threshold (NAB's convention)"], rows)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(args.json, json.dumps(doc, indent=2))
    print(f"wrote {args.json} ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
