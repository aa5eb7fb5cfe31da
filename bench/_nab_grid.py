"""One NAB round over a detector setting, chosen on the tuning half (the rule of bench/tsad_nab_window.py,
shared by the benches that vary one setting of the nab preset: window, ensemble, …).

Each value of `field` (a dotted DetectorConfig name) trains every NAB file's detector on its
probationary 15 % for every seed (tsad_nab_protocol.score_all), applies the preset's alerting and
scores the halves (tsad_nab_protocol.scores). The value with the best median standard score on the
tuning half is chosen; the preset adopts it only if that median is above the incumbent's (the first
value's) best seed on the tuning half, a gain larger than the seed spread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from _common import data_dir, table
from tsad_nab_protocol import alerting, score_all, scores, summary

from core.jobs.atomic import atomic_write_text
from tsad import metrics as M
from tsad.config import preset
from tsad.datasets import iter_nab
from tsad.evaluate import nab_halves

KEYS = ("tuning_standard", "evaluation_standard", "evaluation_low_fp", "evaluation_low_fn", "corpus_standard",
        "evaluation_standard_own_threshold", "corpus_standard_own_threshold")


def run_round(protocol: str, field: str, values: list[Any], out: Path, seeds: list[int], jobs: int,
              record_key: str, incumbent: Any) -> dict:
    """Score every value of `field` (the record, under `record_key`, is rewritten after each) and apply
    the rule above; `incumbent` is the preset's own value."""
    t0 = time.perf_counter()
    series = {s.name: s for s in iter_nab(data_dir())}
    tune, evaluate = nab_halves(list(series))
    setting = {k: getattr(preset("nab").alerting, k) for k in ("long", "short", "level", "peak_window")}
    doc: dict = {"protocol": protocol, "tuning_files": tune, "evaluation_files": evaluate, "seeds": seeds,
                 record_key: {}}
    done = doc[record_key]
    for value in values:
        raw = score_all(list(series), seeds, jobs, {field: value})
        per_seed = [scores({n: M.NabFile(alerting(setting, series[n], *raw[(n, s)]), series[n].windows)
                            for n in series}, tune, evaluate) for s in seeds]
        done[str(value)] = summary(per_seed)
        tuned = done[str(value)]["median"]["tuning_standard"]
        print(f"{field} {value}: tuning-half standard {tuned:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        atomic_write_text(str(out), json.dumps(doc, indent=2))
    best = max(done, key=lambda v: done[v]["median"]["tuning_standard"])
    doc["chosen"] = type(incumbent)(best)
    if str(incumbent) in done:  # the adoption rule needs the incumbent beside it
        bar = done[str(incumbent)]["range"]["tuning_standard"][1]
        doc["adopted"] = type(incumbent)(best) if done[best]["median"]["tuning_standard"] > bar else incumbent
    table(f"NAB, {field} chosen on the tuning half ({len(tune)} files): {best} (adopted: {doc.get('adopted')}); "
          f"median over seeds {','.join(map(str, seeds))} (range)",
          [field, "tuning standard", "evaluation standard", "evaluation low FP", "evaluation low FN",
           "whole corpus standard", "evaluation, own threshold (optimistic)",
           "whole corpus, own threshold (NAB's convention)"],
          [[v, *[f"{d['median'][k]:.2f} ({d['range'][k][0]:.2f}–{d['range'][k][1]:.2f})" for k in KEYS]]
           for v, d in done.items()])
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(str(out), json.dumps(doc, indent=2))
    print(f"wrote {out} ({doc['seconds']:.0f} s)")
    return doc


def main(doc: str, field: str, values: tuple[int, ...], out: Path, record_key: str) -> None:
    """The command line of a one-setting bench: --seeds, --jobs, --out and --<record_key> (a subset
    of the grid, to run it in parts); the first of `values` is the preset's own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument(f"--{record_key}", default=",".join(map(str, values)), help="a subset of the grid")
    args = ap.parse_args()
    run_round(doc.split("Usage:")[0].strip(), field, [int(v) for v in getattr(args, record_key).split(",")],
              args.out, [int(s) for s in args.seeds.split(",")], args.jobs, record_key, values[0])
