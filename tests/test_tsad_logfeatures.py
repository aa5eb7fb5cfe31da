"""tsad.logfeatures (template counts per bucket / line window, vocabulary, new-template events,
contributor text) and tsad.logbench on generated log lines."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from tsad.logbench import LogPCA, choose_threshold, evaluate_records
from tsad.logfeatures import (
    LogCounter,
    Vocabulary,
    build_vocabulary,
    count_frame,
    explain_row,
    span_text,
)
from tsad.logparse import LogRecord
from tsad.logtemplates import OTHER_ID, MinerConfig, TemplateMiner

T0 = pd.Timestamp("2024-01-01 00:00:00")


def rec(line, seconds, content, level="INFO", label=None):
    return LogRecord(line, None if seconds is None else T0 + pd.Timedelta(seconds=seconds), level, content, label)


def vocab(**spec):
    return Vocabulary(((3, "open <*>"), (7, "close <*>")), ("INFO", "ERROR"), **spec)


def test_line_windows_count_templates_other_total_and_levels():
    v = vocab(lines=3)
    assert v.columns == ["t3", "t7", "other", "total", "level_INFO", "level_ERROR", "level_other"]
    records = [rec(1, 0, "open a"), rec(2, 1, "open b", "ERROR"), rec(3, 2, "weird", "DEBUG"),
               rec(4, 3, "close a"), rec(5, 4, "rare one")]
    ids = [3, 3, OTHER_ID, 7, 9]  # 9: seen in training but outside the vocabulary → other, not new
    counter = LogCounter(v)
    emitted = [counter.add(r, i) for r, i in zip(records, ids)]
    assert [len(e) for e in emitted] == [0, 0, 1, 0, 0]
    row = emitted[2][0]
    assert row.values.tolist() == [2, 0, 1, 3, 1, 1, 1]
    assert (row.first_line, row.last_line, row.time) == (1, 3, T0 + pd.Timedelta(seconds=2))
    assert row.new_count == 1 and row.new_templates == [(3, "weird")]
    last = counter.flush()
    assert len(last) == 1 and last[0].values.tolist() == [0, 1, 1, 2, 2, 0, 0] and last[0].new_count == 0
    assert counter.flush() == []
    # the batch helper is the same counter
    counts = count_frame(records, v, ids)
    assert list(counts.frame.columns[:3]) == ["time", "first_line", "last_line"]
    assert counts.values.tolist() == [row.values.tolist(), last[0].values.tolist()]
    assert counts.frame["last_line"].tolist() == [3, 5] and counts.events == [(3, "weird")]
    assert counts.columns["t7"] == "close <*>" and counts.columns["other"].startswith("<other")


def test_time_buckets_fill_gaps_late_and_untimed_lines():
    v = vocab(bucket="1min")
    counter = LogCounter(v, max_empty=5)
    assert counter.add(rec(1, None, "open x"), 3) == [] and counter.dropped == 1  # untimed before any stamp
    out = []
    for r, i in [(rec(2, 5, "open x"), 3), (rec(3, 50, "close x", label="ALERT"), 7), (rec(4, None, "open y"), 3),
                 (rec(5, 190, "open z"), 3), (rec(6, 100, "close late"), 7),  # late: counted in the open bucket
                 (rec(7, 3600, "open far"), 3)]:  # a silence longer than max_empty empty buckets is skipped
        out += counter.add(r, i)
    out += counter.flush()
    assert [r.time for r in out] == [T0 + pd.Timedelta(m) for m in ("0min", "1min", "2min", "3min", "60min")]
    assert out[0].values[:4].tolist() == [2, 1, 0, 3] and out[0].alert and out[0].last_line == 4
    assert out[1].values.sum() == out[2].values.sum() == 0 and out[1].first_line is None  # empty buckets
    assert out[3].values[:4].tolist() == [1, 1, 0, 2] and not out[3].alert and out[3].last_line == 6
    assert out[4].values[:4].tolist() == [1, 0, 0, 1]
    frame = count_frame([rec(1, 0, "open a"), rec(2, 130, "open b")], v, [3, 3]).frame
    assert frame["time"].tolist() == [T0, T0 + pd.Timedelta("1min"), T0 + pd.Timedelta("2min")]
    assert frame["t3"].tolist() == [1, 0, 1]
    assert span_text("1min", None) == "1 min" and span_text(None, 20) == "20 lines" and span_text("2h", None) == "2 h"
    with pytest.raises(UserError):
        vocab(bucket="1M")  # month ends are no fixed length
    with pytest.raises(UserError):
        vocab(bucket="1min", lines=5)


def test_vocabulary_from_training_round_trip_and_damage():
    miner = TemplateMiner(MinerConfig())
    contents = ["Accepted password for alice from 10.0.0.1 port 22 ssh2"] * 5 + \
               ["Connection closed by 10.0.0.2 port 22"] * 3 + ["session opened for user root"]
    miner.add_all(contents)
    records = [rec(k + 1, 30 * k, c, "ERROR" if k == 0 else "INFO") for k, c in enumerate(contents)]
    v, counts = build_vocabulary(records, miner, top_k=2, bucket="1min")
    assert len(v.templates) == 2 and v.templates[0][1].startswith("Accepted password")
    assert v.levels == ("INFO", "ERROR") and len(counts.frame) == 5
    assert v.usual_of()["total"] == pytest.approx(9 / 5)
    again = Vocabulary.from_dict(json.loads(json.dumps(v.to_dict())))
    assert again == v and again.columns == v.columns
    good = v.to_dict()
    damaged = [
        "not an object",
        {**good, "version": 99},
        {**good, "templates": [[1, "a"], [1, "b"]]},
        {**good, "templates": [["x", "a"]]},
        {**good, "templates": [[1, ""]]},
        {**good, "usual": [1.0]},
        {**good, "usual": [float("nan")] * len(v.columns)},
        {**good, "levels": ["INFO", 3]},
        {**good, "lines": 5},
        {**good, "bucket": "soon"},
        {**good, "extra": 1},
    ]
    for bad in damaged:
        with pytest.raises(UserError):
            Vocabulary.from_dict(bad)
    # a line no training template covers is "other" and a new-template event
    later = count_frame([rec(1, 0, "kernel panic: out of memory"), rec(2, 1, contents[0])], v, miner=miner)
    assert later.frame["other"].tolist() == [1] and later.new_count == 1
    assert later.events == [(1, "kernel panic: out of memory")]


def test_explain_row_names_the_burst_against_its_training_mean():
    v = Vocabulary(((4, "Failed password for invalid user <*> from <*> port <*> ssh2"), (5, "Accepted <*>")),
                   (), bucket="1min", lines=None)
    train = pd.DataFrame({"t4": [4, 3, 5, 4], "t5": [10, 10, 10, 10], "other": [0, 1, 0, 0],
                          "total": [14, 14, 15, 14]})
    v = v.with_usual(train)
    row = {"t4": 312, "t5": 9, "other": 3, "total": 324}
    text = explain_row(row, v, top=3)
    assert text[0] == ("Failed password for invalid user <*> from <*> port <*> ssh2: "
                       "312 in 1 min (usual 4.0 = training mean)")
    assert len(text) == 2 and text[1].startswith("<other")  # t5 is below its usual: not named
    assert explain_row(row, v, contributions={"t4": 0.1, "other": 0.9})[0].startswith("<other")
    with pytest.raises(UserError):
        explain_row(row, Vocabulary(((4, "x"),), (), lines=3))  # no usual counts


def test_pca_and_threshold_rule():
    rng = np.random.default_rng(0)
    base = rng.poisson(1, size=(200, 1)) * np.array([[1, 2, 1, 1]])  # often absent: idf > 0
    x = base + rng.poisson(0.05, size=base.shape)
    pca = LogPCA().fit(x)
    odd = x[:1].copy()
    odd[0, 3] += 40  # breaks the correlation between the columns
    assert pca.score(odd)[0] > pca.score(x).max() and 0 < pca.k_ < 4 and np.isfinite(pca.q_threshold_)
    assert choose_threshold(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]), np.array([0.5])) == 0.8
    assert choose_threshold(np.array([0, 0]), np.array([0.1, 0.2]), np.array([0.3, 0.7])) == 0.7


def _generated_lines(seed=0):
    """Normal traffic of four templates, then a burst of failed logins (labelled) in the test part."""
    rnd = random.Random(seed)
    normal = [("Accepted password for {u} from 10.0.0.{n} port {p} ssh2", 0.5),
              ("Connection closed by 10.0.0.{n} port {p}", 0.3),
              ("session opened for user {u}", 0.15),
              ("Failed password for invalid user {u} from 10.0.0.{n} port {p} ssh2", 0.05)]
    users = ["alice", "bob", "carol", "dave"]
    records = []
    for k in range(600):
        burst = 510 <= k < 530
        if burst:
            text, label = normal[3][0], "BURST"
        else:
            text = rnd.choices([t for t, _ in normal], [w for _, w in normal])[0]
            label = None
        content = text.format(u=rnd.choice(users), n=rnd.randint(1, 254), p=rnd.randint(1024, 65535))
        records.append(LogRecord(k + 1, T0 + pd.Timedelta(seconds=k), "INFO", content, label))
    return records


def test_evaluate_records_ranks_the_injected_burst_highest():
    result = evaluate_records(_generated_lines(), window_lines=10, train_fraction=0.6, val_fraction=0.25,
                              top_k=10, seeds=(0,), candidates={"conv-w4": {
                                  "window": 4, "network.kind": "conv", "network.channels": (8, 4),
                                  "network.kernel_size": 3, "training.epochs": 8}},
                              miner_config=MinerConfig())
    data = result["data"]
    assert data["windows"] == 60 and data["test_windows"] == 24 and data["anomalous_test"] == 2
    assert data["anomalous_fit"] == 0 and data["anomalous_val"] == 0
    ae = result["detectors"]["autoencoder"]
    assert ae["pr_auc"] == 1.0  # both burst windows outrank every normal test window
    assert ae["setting"] == "conv-w4" and len(ae["runs"]) == 1
    for key in ("pca", "pca_q_statistic", "isolation_forest"):
        assert 0.0 <= result["detectors"][key]["pr_auc"] <= 1.0
    assert result["settings"]["window_lines"] == 10 and isinstance(result["bar_met"], bool)
    json.dumps(result)  # plain JSON
