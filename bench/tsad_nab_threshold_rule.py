"""NAB: which rule picks the corpus threshold so that it carries over to files that did not choose it?
(issue 11, NAB bar; a round after bench/tsad_nab_protocol.py, onsets and window.)

Why: the nab preset scores 52.4 on the evaluation half at that half's own best threshold but 46.2 at
the tuning half's: a third of the gap to NAB's published detectors is the threshold's transfer, not
the detector. The tuning half's score is a jagged step function of the threshold, and its single
highest point (NAB's optimiser, `tsad.metrics.nab_corpus_score`) may sit on a narrow spike. That
gap was seen before this round was written; no result of this round was.

Protocol, fixed before any result of it was seen:
- Scores: the nab preset's alert scores per file, as `ae tsad evaluate --benchmark nab --seed S
  --out DIR` writes them (seeds 0, 1, 2); windows from the NAB labels (tsad.datasets.iter_nab).
- Halves: tsad.evaluate.NAB_SPLIT_RULE. The rule is chosen inside the tuning half only: its files are
  split again by the same rule (within each category, alternating by name) into quarters A and B.
- Rules: `argmax` (the incumbent: the best threshold among every distinct score) and `smoothed w`
  for w in 0.1, 0.25, 0.5: the standard score on a grid of thresholds evenly spaced in
  u = −log10(1 − t) (0 to 10 in steps of 0.005, and one above every score), averaged over ±w of u
  (a moving average), and the grid threshold with the best average.
- Choice: each rule picks its threshold on A and is scored on B, and picks on B and is scored on A;
  its transfer is the mean of the two. The rule with the best median transfer over the seeds is
  chosen; the incumbent stays unless another rule beats it.
- Report, per rule (the chosen one marked): the transfer (median, range), then with the threshold
  picked on the whole tuning half, the evaluation half (honest) and the whole corpus (partly
  optimistic); and the chosen rule's three profiles on the evaluation half.
Record: bench/tsad_nab_threshold_rule.json.

Usage: for s in 0 1 2; do ae tsad evaluate --benchmark nab --device cpu --seed $s --out nab_s$s; done
       AE_DATA_DIR=../shared/data python bench/tsad_nab_threshold_rule.py --scores nab_s0,nab_s1,nab_s2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from _common import data_dir, median_range, table

from core.jobs.atomic import atomic_write_text
from tsad import metrics as M
from tsad.datasets import iter_nab
from tsad.evaluate import nab_halves, nab_score_at

OUT = Path(__file__).with_name("tsad_nab_threshold_rule.json")
WIDTHS = (0.1, 0.25, 0.5)
PROFILES = {"standard": "nab_standard", "reward_low_FP_rate": "nab_low_fp", "reward_low_FN_rate": "nab_low_fn"}

Rule = Callable[[list[M.NabFile], str], float]  # (files, profile) -> threshold


def argmax_rule(files: list[M.NabFile], profile: str) -> float:
    return M.nab_corpus_score(files, profile)[1]


def smoothed_rule(width: float) -> Rule:
    """The grid threshold whose score, averaged over ±width decades of 1 − t, is highest
    (tsad.metrics.nab_plateau_threshold)."""
    return lambda files, profile: M.nab_plateau_threshold(files, profile, width)


RULES: dict[str, Rule] = {"argmax": argmax_rule, **{f"smoothed {w}": smoothed_rule(w) for w in WIDTHS}}


def load(folder: Path, windows: dict[str, list[tuple[int, int]]]) -> dict[str, M.NabFile]:
    out = {}
    for name, wins in windows.items():
        if not (folder / name).is_file():
            sys.exit(f"{folder / name}: missing; write it with `ae tsad evaluate --benchmark nab --out {folder}`")
        frame = pd.read_csv(folder / name)
        out[name] = M.NabFile(np.nan_to_num(frame["anomaly_score"].to_numpy(dtype=float), nan=0.0), wins)
    return out


def transfer(rule: Rule, files: dict[str, M.NabFile], a: list[str], b: list[str]) -> float:
    fa, fb = [files[n] for n in a], [files[n] for n in b]
    return (nab_score_at(fb, "standard", rule(fa, "standard")) + nab_score_at(fa, "standard", rule(fb, "standard"))) / 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scores", required=True, help="comma-separated `evaluate --out` folders, one per seed")
    args = ap.parse_args()
    folders = [Path(p) for p in args.scores.split(",")]
    windows = {s.name: s.windows for s in iter_nab(data_dir())}
    tuning, evaluation = nab_halves(list(windows))
    quarter_a, quarter_b = nab_halves(tuning)
    per_seed = [load(f, windows) for f in folders]
    record: dict = {"protocol": __doc__, "folders": [str(f) for f in folders], "quarters": [quarter_a, quarter_b],
                    "rules": {}}
    for name, rule in RULES.items():
        rows = []
        for files in per_seed:
            th = rule([files[n] for n in tuning], "standard")
            rows.append({"transfer": transfer(rule, files, quarter_a, quarter_b), "threshold": th,
                         "evaluation": nab_score_at([files[n] for n in evaluation], "standard", th),
                         "all": nab_score_at(list(files.values()), "standard", th)})
        record["rules"][name] = rows
    best = max(RULES, key=lambda r: (statistics.median(x["transfer"] for x in record["rules"][r]), r == "argmax"))
    incumbent = statistics.median(x["transfer"] for x in record["rules"]["argmax"])
    chosen = best if statistics.median(x["transfer"] for x in record["rules"][best]) > incumbent else "argmax"
    record["chosen"] = chosen
    table("NAB threshold rules: chosen on the tuning half's quarters (standard profile, median of seeds (range))",
          ["rule", "transfer A↔B (chooses)", "evaluation half", "whole corpus"],
          [[f"**{r}** (chosen)" if r == chosen else r,
            median_range([x["transfer"] for x in rows], 2), median_range([x["evaluation"] for x in rows], 2),
            median_range([x["all"] for x in rows], 2)] for r, rows in record["rules"].items()])
    profiles = {}
    for profile, key in PROFILES.items():
        vals = []
        for files in per_seed:
            th = RULES[chosen]([files[n] for n in tuning], profile)
            vals.append(nab_score_at([files[n] for n in evaluation], profile, th))
        profiles[key] = vals
    record["chosen_evaluation_profiles"] = profiles
    table(f"the chosen rule ({chosen}), evaluation half, every profile", list(PROFILES.values()),
          [[median_range(v, 2) for v in profiles.values()]])
    atomic_write_text(OUT, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
