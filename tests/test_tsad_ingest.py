"""One way in for rows (tsad.ingest): the rules on their own, and `detect` (causal) == `score` ==
`monitor` row for row on messy inputs (gaps at the start and inside, duplicate and out-of-order
timestamps, junk cells, bad lines), through the CLI and through the library."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from core.errors import UserError
from core.jobs.tables import EXACT_FLOATS
from tsad.ingest import CausalIngest, Layout, LineSplitter, Rejected, Rows, RowScreen, fill_gaps, read_rows, to_stamp

runner = CliRunner()
LAYOUT = Layout(["v0", "v1"], "timestamp")
START = pd.Timestamp("2024-01-01")
# row kinds for messy files; "ok" is listed several times so that most rows are good
KINDS = ("ok",) * 6 + ("gap0", "gap1", "gap01", "junk", "inf", "dup", "back", "badtime", "fields", "blank")
REJECTED_KINDS = {"junk", "inf", "dup", "back", "badtime", "fields"}


def _value(i: int, channel: int) -> str:
    return f"{np.sin(2 * np.pi * i / 25 + channel) + 10.0 * channel:.6f}"  # v1 sits near 10: not 0 in raw units


def messy_lines(kinds: list[str]) -> list[str]:
    """A CSV (header first) with one line per kind; row i is due at START + 5 min * i."""
    lines = ["timestamp,v0,v1"]
    for i, kind in enumerate(kinds):
        when = START + pd.Timedelta(minutes=5 * i)
        v0, v1 = _value(i, 0), _value(i, 1)
        if kind == "blank":
            lines.append("")
            continue
        if kind in ("gap0", "gap01"):
            v0 = ""
        if kind in ("gap1", "gap01"):
            v1 = "NA" if i % 2 else ""
        v1 = "abc" if kind == "junk" else v1
        v0 = "inf" if kind == "inf" else v0
        when = when - pd.Timedelta(minutes=5) if kind == "dup" else when  # repeats the previous row's time
        when = when - pd.Timedelta(hours=2) if kind == "back" else when
        stamp = "not-a-time" if kind == "badtime" else str(when)
        lines.append(f"{stamp},{v0}" if kind == "fields" else f"{stamp},{v0},{v1}")
    return lines


def _rows(lines: list[str], layout: Layout = LAYOUT) -> list[tuple[int, list | Rejected]]:
    splitter = LineSplitter(layout)
    out = []
    for no, line in enumerate(lines, 1):
        got = splitter.split(line, no)
        if got is not None:
            out.append((no, got))
    return out


def _ingest(items: list[tuple[int, list | Rejected]], cuts: list[int], start=(0.0, 10.0), layout: Layout = LAYOUT):
    """Feed split rows to a CausalIngest in pieces cut at `cuts`, carrying its state through JSON
    (a new object per piece, as a restarted monitor would); returns (lines, stamps, values, rejections)."""
    state = None
    lines, stamps, values, rejected = [], [], [], []
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(items))), len(items)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ingest = CausalIngest(layout, start)
        if state is not None:
            ingest.restore(json.loads(state))
        piece = items[lo:hi]
        rejected += [got for _, got in piece if isinstance(got, Rejected)]
        good = [(no, got) for no, got in piece if not isinstance(got, Rejected)]
        accepted, bad = ingest.push(Rows.from_cells(layout, [n for n, _ in good], [g for _, g in good]))
        rejected += bad
        lines += accepted.line_no.tolist()
        stamps += [] if accepted.timestamps is None else accepted.timestamps.tolist()
        values.append(accepted.values)
        state = json.dumps(ingest.state())
    return lines, stamps, np.vstack(values), sorted((r.line_no, r.reason) for r in rejected)


# ----------------------------------------------------------------------------------- ingest alone
@settings(deadline=None, max_examples=60)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=40), data=st.data())
def test_causal_ingest_is_the_same_whole_chunked_and_one_at_a_time(kinds: list[str], data) -> None:  # noqa: ANN001
    items = _rows(messy_lines(kinds))
    whole = _ingest(items, [])
    cuts = data.draw(st.lists(st.integers(0, len(items)), max_size=6))
    for got in (_ingest(items, cuts), _ingest(items, list(range(len(items))))):
        assert got[0] == whole[0] and got[1] == whole[1] and got[3] == whole[3]
        np.testing.assert_array_equal(got[2], whole[2])
    assert np.isfinite(whole[2]).all()
    assert len(whole[0]) + len(whole[3]) == sum(k != "blank" for k in kinds)


def test_each_rejection_reason() -> None:
    lines = ["timestamp;v0;v1",  # `;` is sniffed from the header
             "2024-01-01 00:00;1;2",
             "2024-01-01 00:05;abc;2",  # 3
             "2024-01-01 00:10;1;inf",  # 4
             "2024-01-01 00:15;1e999;2",  # 5: overflows to infinity
             "not-a-time;1;2",  # 6
             "12:30;1;2",  # 7: time of day only: it would mean another day tomorrow
             "today;1;2",  # 8
             ";1;2",  # 9
             "2024-01-01 00:00;1;2",  # 10: the time of line 2
             "2023-12-31 00:00;1;2",  # 11
             "2024-01-01 00:20;1",  # 12
             "timestamp;v0;v1",  # a repeated header: skipped
             "2024-01-01 00:25; NA ;null",  # missing readings: filled, not rejected
             "2024-01-01 00:30;[1];2"]  # 15
    lines_, _, values, rejected = _ingest(_rows(lines), [])
    reasons = dict(rejected)
    assert lines_ == [2, 14] and values[1].tolist() == [1.0, 2.0]
    assert reasons[3] == "bad number 'abc' in v0" and reasons[15] == "bad number '[1]' in v0"
    assert reasons[4] == "infinite value in v1" and reasons[5] == "infinite value in v0"
    for no, text in ((6, "not-a-time"), (7, "12:30"), (8, "today")):
        assert reasons[no] == f"timestamp '{text}' cannot be parsed"
    assert reasons[9] == "empty timestamp"
    assert reasons[10] == "duplicate timestamp 2024-01-01 00:00:00 repeats line 2 (--duplicates first keeps the first)"
    assert reasons[11] == ("out-of-order timestamp 2023-12-31 00:00:00 (not in increasing order after "
                           "2024-01-01 00:00:00 on line 2)")
    assert reasons[12] == "expected 3 fields, got 2"
    with pytest.raises(UserError, match="no column 'v1'"):
        _rows(["timestamp,v0,other", "2024-01-01,1,2"])


def test_timestamps_read_as_pandas_timestamp_reads_each_cell() -> None:
    cells = ["2024-01-01", " 2024-01-01T00:05:03 ", "2024-01-01 00:05:03.123456789", "2024-01-01T00:05:03Z",
             "2024-01-01T00:05:03+01:00", "2024-01-01 00:05:03-0530", "Jan 5 2024 10:00", "2024-02-30 00:00",
             "1500-01-01"]  # outside what nanoseconds hold
    accepted, rejected = RowScreen(Layout(["v"], "t"), check_order=False).push(
        Rows(np.arange(len(cells)), np.ones((len(cells), 1)), np.array(cells, dtype=object)))
    assert [r.reason for r in rejected] == [f"timestamp {c!r} cannot be parsed" for c in cells[-2:]]
    assert accepted.timestamps.view(np.int64).tolist() == [to_stamp(c) for c in cells[:-2]]
    assert to_stamp("2024-01-01T00:05:03+01:00") == pd.Timestamp("2023-12-31 23:05:03").value


def test_json_lines_reasons() -> None:
    splitter = LineSplitter(LAYOUT, fmt="jsonl")
    assert splitter.split("{oops", 1).reason == "not valid JSON"
    assert splitter.split("[1, 2]", 2).reason == "JSON line is not an object"
    assert splitter.split('{"timestamp": "2024-01-01", "v0": 1}', 3).reason == "missing field v1"
    assert splitter.split('{"timestamp": "2024-01-01", "v0": 1, "v1": null}', 4) == ["2024-01-01", 1, None]


def test_a_rejected_row_never_moves_the_clock_and_gaps_fill_causally() -> None:
    lines = ["timestamp,v0,v1", "2024-01-01 00:00,1,", "2024-01-01 00:10,x,5", "2024-01-01 00:05,,6",
             "2024-01-01 00:06,3,", "2024-01-01 00:07+01:00,4,7"]
    ingest = CausalIngest(LAYOUT, start=[-1.0, 42.0])
    items = _rows(lines)
    accepted, rejected = ingest.push(Rows.from_cells(LAYOUT, [n for n, _ in items], [g for _, g in items]))
    # line 3 is rejected (bad number), so line 4's earlier time is still in order
    assert accepted.line_no.tolist() == [2, 4, 5] and [r.line_no for r in rejected] == [3, 6]
    # v1 starts at its start value (no reading yet), then carries its last value; v0 its last value
    assert accepted.values.tolist() == [[1.0, 42.0], [1.0, 6.0], [3.0, 6.0]]
    assert (ingest.counts.missing, ingest.counts.filled_start) == (3, 1)
    # 00:07+01:00 is 23:07 UTC the day before: out of order
    assert "out-of-order timestamp 2023-12-31 23:07:00" in rejected[1].reason


def test_batch_form_interpolates_short_gaps_only() -> None:
    x = np.array([np.nan, 1.0, np.nan, 3.0] + [np.nan] * 7 + [11.0])[:, None]
    filled, report = fill_gaps(x, max_gap=5)
    assert filled[:, 0].tolist() == [1.0, 1.0, 2.0, 3.0] + [3.0] * 7 + [11.0]
    assert report == {"missing": 9, "interpolated": 1, "filled": 8}


def test_parquet_and_csv_give_the_same_rows(tmp_path: Path) -> None:
    frame = pd.DataFrame({"timestamp": pd.date_range(START, periods=6, freq="5min"),
                          "v0": [1.0, np.nan, 3.0, np.inf, 5.0, 6.0], "v1": [np.nan, 2.0, 3.0, 4.0, 5.0, 6.0]})
    frame.loc[4, "timestamp"] = frame.loc[2, "timestamp"]  # row 3 (inf) is rejected: row 2 is the last kept
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    frame.to_csv(tmp_path / "a.csv", index=False)
    got = []
    for name in ("a.parquet", "a.csv"):
        (rows, split_rejected), = list(read_rows(tmp_path / name, LAYOUT))
        accepted, rejected = CausalIngest(LAYOUT, [0.0, 10.0]).push(rows)
        got.append((accepted, [r.reason for r in split_rejected + rejected]))
    (pq_rows, pq_reasons), (csv_rows, csv_reasons) = got
    assert [r.split(" repeats")[0] for r in pq_reasons] == [r.split(" repeats")[0] for r in csv_reasons] == [
        "infinite value in v0", f"duplicate timestamp {frame.loc[2, 'timestamp']}"]
    assert csv_rows.line_no.tolist() == (pq_rows.line_no + 1).tolist()  # CSV counts its header line
    np.testing.assert_array_equal(pq_rows.values, csv_rows.values)
    np.testing.assert_array_equal(pq_rows.timestamps, csv_rows.timestamps)


# ------------------------------------------------------------------------- detect == score == monitor
def _train(root: Path, *extra: str) -> Path:
    n = 200
    pd.DataFrame({"timestamp": pd.date_range("2023-01-01", periods=n, freq="5min"),
                  "v0": [float(_value(i, 0)) for i in range(n)],
                  "v1": [float(_value(i, 1)) for i in range(n)]}).to_csv(root / "train.csv", index=False)
    result = runner.invoke(app, ["tsad", "train", "--data", str(root / "train.csv"), "--out", str(root / "model"),
                                 "--window", "8", "--epochs", "1", "--seed", "0", "--device", "cpu", "--quiet",
                                 *extra])
    assert result.exit_code == 0, result.output
    return root / "model"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {"plain": _train(tmp_path_factory.mktemp("ingest_plain")),
            "smoothed": _train(tmp_path_factory.mktemp("ingest_smooth"), "--smooth", "3")}


def _rejected_lines(text: str, pattern: str) -> list[int]:
    found = re.search(pattern, text)
    return [int(x) for x in re.findall(r"\d+", found.group(1))] if found else []


@pytest.mark.parametrize("which", ["plain", "smoothed"])
def test_cli_detect_score_and_monitor_agree_on_a_messy_file(models: dict[str, Path], which: str,
                                                           tmp_path: Path) -> None:
    model = models[which]
    kinds = (["gap1"] * 3 + ["ok"] * 12 + ["gap0"] * 2 + ["ok"] * 6 + ["gap1"] * 8 + ["ok"] * 4 + ["dup", "ok", "junk"]
             + ["ok"] * 3 + ["back", "ok", "badtime", "gap01", "ok", "inf", "fields", "blank"] + ["ok"] * 10)
    data = tmp_path / "messy.csv"
    data.write_text("\n".join(messy_lines(kinds)) + "\n")
    expected = [i + 2 for i, k in enumerate(kinds) if k in REJECTED_KINDS]  # line = row + 2 (header, 1-based)

    detect = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(data), "--out",
                                 str(tmp_path / "d.csv"), "--device", "cpu"])
    assert detect.exit_code == 3, detect.output
    assert "6 row(s) rejected" in detect.output
    assert [int(x) for x in re.findall(r"line (\d+):", detect.output)] == expected

    score = runner.invoke(app, ["tsad", "score", "--model", str(model), "--input", str(data), "--out",
                                str(tmp_path / "s.parquet"), "--chunk-rows", "9", "--device", "cpu", "--quiet"])
    assert score.exit_code == 3, score.output
    manifest = json.loads((tmp_path / "s.parquet.manifest.json").read_text())
    assert [r["row"] for r in manifest["rejected"]] == expected
    assert manifest["inputs"][0]["gaps"] == {"missing": 15, "filled_start": 3}

    monitor = runner.invoke(app, ["tsad", "monitor", "--model", str(model), "--input", str(data), "--alerts",
                                  str(tmp_path / "a.jsonl"), "--emit-scores", str(tmp_path / "m.jsonl"),
                                  "--batch", "5", "--quiet"])
    assert monitor.exit_code == 0, monitor.output
    assert _rejected_lines(monitor.output, r"6 rejected \(line ([\d, ]+)\)") == expected

    d = pd.read_csv(tmp_path / "d.csv", parse_dates=["timestamp"])
    s = pd.read_parquet(tmp_path / "s.parquet")
    m = pd.DataFrame([json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()])
    kept = [i for i, k in enumerate(kinds) if k not in REJECTED_KINDS and k != "blank"]
    assert len(d) == len(s) == len(m) == len(kept)
    assert m["line"].tolist() == [i + 2 for i in kept]
    assert (d["timestamp"] == s["timestamp"]).all() and (d["timestamp"] == pd.to_datetime(m["timestamp"])).all()
    for other in (s["score"], m["score"].astype(float)):
        np.testing.assert_allclose(other.to_numpy(dtype=float), d["score"].to_numpy(), rtol=1e-6, atol=1e-9,
                                   equal_nan=True)
    np.testing.assert_allclose(s[["v0", "v1"]].to_numpy(), d[["v0", "v1"]].to_numpy(), rtol=1e-12)
    # the leading gap of v1 takes its training mean; later gaps the channel's last value
    train_mean = pd.read_csv(model.parent / "train.csv")["v1"].mean()
    np.testing.assert_allclose(d["v1"][:3], train_mean, rtol=1e-9)
    assert (d["v0"][15:17] == d["v0"][14]).all() and (d["v1"][23:31] == d["v1"][22]).all()

    offline = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(data), "--out",
                                  str(tmp_path / "o.csv"), "--mode", "offline", "--device", "cpu", "--quiet"])
    assert offline.exit_code == 3
    o = pd.read_csv(tmp_path / "o.csv")
    assert len(o) == len(d) and o["v0"][15] != o["v0"][14]  # offline: the short gap is interpolated


@settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=30),
       chunk_rows=st.integers(8, 24), batch=st.integers(1, 6))
def test_library_paths_agree_on_messy_series(models: dict[str, Path], kinds: list[str], chunk_rows: int,
                                             batch: int) -> None:
    from tsad.batch import detect_file
    from tsad.detector import WindowDetector
    from tsad.monitor import Monitor
    from tsad.scorejob import score_inputs

    model = models["smoothed"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "messy.csv"
        data.write_text("\n".join(messy_lines(kinds)) + "\n")
        try:
            found = detect_file(WindowDetector.load(model, device="cpu"), data, "causal")
            stamps, scores = found.series.timestamps, found.scores.score
            rejected = [r.line_no for r in found.rejected]
        except UserError as exc:  # every row rejected
            assert "no rows to score" in str(exc)
            stamps, scores, rejected = pd.DatetimeIndex([]), np.zeros(0), None
        manifest = score_inputs(model, [str(data)], root / "s.parquet", chunk_rows=chunk_rows, device="cpu")
        mon = Monitor(model, str(data), alerts=str(root / "a.jsonl"), scores=str(root / "m.jsonl"), batch=batch,
                      device="cpu")
        stats = mon.run()
        emitted = [json.loads(x) for x in (root / "m.jsonl").read_text().splitlines()]
        table = pd.read_parquet(root / "s.parquet") if manifest.rows_out else None

    score_rejected = [r["row"] for r in manifest.rejected]
    assert rejected is None or score_rejected == rejected
    assert stats.rejected == len(score_rejected) and stats.rejected_lines == score_rejected[:10]
    assert manifest.rows_out == stats.records == len(emitted) == len(stamps)
    assert [pd.Timestamp(e["timestamp"]) for e in emitted] == list(stamps)
    np.testing.assert_allclose(np.array([e["score"] for e in emitted], dtype=float), scores, rtol=1e-6, atol=1e-9,
                               equal_nan=True)
    if table is not None:
        assert table["timestamp"].tolist() == list(stamps)
        np.testing.assert_allclose(table["score"].to_numpy(dtype=float), scores, rtol=1e-6, atol=1e-9,
                                   equal_nan=True)


# ------------------------------------------------------------------------------------ the duplicates policy
DUP_LINES = ["timestamp,v0,v1", "2024-01-01 00:00,1,1", "2024-01-01 00:05,2,2", "2024-01-01 00:05,3,3",  # 4 repeats 3
             "2024-01-01 00:05,4,4", "2024-01-01 00:10,5,5", "2024-01-01 00:07,6,6",  # 7 is out of order
             "2024-01-01 00:15,7,7", "2024-01-01 00:15,8,8"]  # 9 repeats 8, at the end


def _policy(duplicates: str, cuts: list[int]) -> tuple[list[int], list[float], list[tuple[int, str, str]]]:
    """DUP_LINES through a CausalIngest cut into pieces (its state through JSON), then flushed."""
    items = _rows(DUP_LINES)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(items))), len(items)]
    state, lines, values, rejected = None, [], [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ingest = CausalIngest(LAYOUT, (0.0, 0.0), duplicates)
        if state is not None:
            ingest.restore(json.loads(state))
        piece = items[lo:hi]
        accepted, bad = ingest.push(Rows.from_cells(LAYOUT, [n for n, _ in piece], [g for _, g in piece]))
        lines += accepted.line_no.tolist()
        values += accepted.values[:, 0].tolist()
        rejected += [(r.line_no, r.kind, r.reason) for r in bad]
        state = json.dumps(ingest.state())
    tail = ingest.flush()
    return lines + tail.line_no.tolist(), values + tail.values[:, 0].tolist(), sorted(rejected)


@pytest.mark.parametrize("duplicates,kept", [("first", [2, 3, 6, 8]), ("last", [2, 5, 6, 9]), ("drop", [2, 6])])
def test_duplicates_policies_keep_the_same_rows_whole_chunked_and_one_at_a_time(duplicates: str,
                                                                                 kept: list[int]) -> None:
    whole = _policy(duplicates, [])
    assert whole[0] == kept
    assert whole[1] == [float(no - 1) for no in kept]
    for cuts in ([3], [1, 4, 6], list(range(8))):
        assert _policy(duplicates, cuts) == whole
    reasons = {no: (kind, reason) for no, kind, reason in whole[2]}
    assert reasons[7] == ("bad", "out-of-order timestamp 2024-01-01 00:07:00 (not in increasing order after "
                                 "2024-01-01 00:10:00 on line 6)")
    left_out = sorted(set(range(2, 10)) - set(kept) - {7})
    assert sorted(no for no, kind, _ in whole[2] if kind == "repeat") == left_out
    if duplicates == "first":
        assert reasons[4][1] == ("duplicate timestamp 2024-01-01 00:05:00 repeats line 3 "
                                 "(--duplicates first keeps the first)")
    if duplicates == "last":
        assert reasons[3][1] == ("duplicate timestamp 2024-01-01 00:05:00: line 4 repeats it and replaces it "
                                 "(--duplicates last)")


def test_duplicates_error_refuses_naming_both_lines() -> None:
    items = _rows(DUP_LINES)
    with pytest.raises(UserError, match=r"line 4: timestamp 2024-01-01 00:05:00 repeats line 3 \(--duplicates error"):
        CausalIngest(LAYOUT, duplicates="error").push(Rows.from_cells(LAYOUT, [n for n, _ in items],
                                                                       [g for _, g in items]))
    with pytest.raises(UserError, match="unknown duplicates policy 'latest'"):
        CausalIngest(LAYOUT, duplicates="latest")


def test_cli_duplicates_on_every_reader(models: dict[str, Path], tmp_path: Path, flat) -> None:  # noqa: ANN001
    data = tmp_path / "dup.csv"
    data.write_text("\n".join(messy_lines(["ok"] * 12 + ["dup"] + ["ok"] * 12)) + "\n")  # line 14 repeats line 13
    model = models["plain"]
    for duplicates, rows, code in (("first", 24, 3), ("last", 24, 3), ("drop", 23, 3)):
        out = tmp_path / f"{duplicates}.csv"
        result = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(data), "--out", str(out),
                                     "--duplicates", duplicates, "--device", "cpu"])
        assert result.exit_code == code, result.output
        assert len(pd.read_csv(out)) == rows
    result = runner.invoke(app, ["tsad", "detect", "--model", str(model), "--data", str(data), "--out",
                                 str(tmp_path / "e.csv"), "--duplicates", "error", "--device", "cpu"])
    assert result.exit_code == 2 and "line 14: timestamp 2024-01-01 00:55:00 repeats line 13" in flat(result.output)
    result = runner.invoke(app, ["tsad", "score", "--model", str(model), "--input", str(data), "--out",
                                 str(tmp_path / "s.parquet"), "--duplicates", "last", "--device", "cpu", "--quiet"])
    assert result.exit_code == 3, result.output
    manifest = json.loads((tmp_path / "s.parquet.manifest.json").read_text())
    assert [(r["row"], r["reason"]) for r in manifest["rejected"]] == [
        (13, "duplicate timestamp 2024-01-01 00:55:00: line 14 repeats it and replaces it (--duplicates last)")]
    assert manifest["params"]["duplicates"] == "last"
    train = [str(data), "--window", "8", "--epochs", "1", "--device", "cpu", "--quiet"]
    result = runner.invoke(app, ["tsad", "train", "--data", *train, "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["tsad", "train", "--data", *train, "--out", str(tmp_path / "m2"),
                                 "--duplicates", "error"])
    assert result.exit_code == 2 and "dup.csv: line 14: timestamp 2024-01-01 00:55:00 repeats line 13" in \
        flat(result.output)
    assert "--duplicates" in runner.invoke(app, ["tsad", "evaluate", "--help"]).output


def test_nab_daylight_saving_repeats(data_dir: Path, tmp_path: Path, flat) -> None:  # noqa: ANN001
    source = data_dir / "nab" / "data" / "realKnownCause" / "ec2_request_latency_system_failure.csv"
    if not source.is_file():
        pytest.skip(f"{source} is not there")
    lines = source.read_text().splitlines()
    # lines 558-569 all say 2014-03-09 03:00:00 (the skipped daylight-saving hour); keep 100 lines around them
    assert lines[557].startswith("2014-03-09 03:00:00") and lines[568].startswith("2014-03-09 03:00:00")
    part = tmp_path / "ec2.csv"
    part.write_text("\n".join([lines[0], *lines[499:599]]) + "\n")  # file line 558 is now line 60
    args = ["--window", "8", "--epochs", "1", "--device", "cpu"]
    refused = runner.invoke(app, ["tsad", "train", "--data", str(part), "--out", str(tmp_path / "m0"), *args,
                                  "--duplicates", "error"])
    assert refused.exit_code == 2
    assert "line 61: timestamp 2014-03-09 03:00:00 repeats line 60" in flat(refused.output)
    trained = runner.invoke(app, ["tsad", "train", "--data", str(part), "--out", str(tmp_path / "m"), *args])
    assert trained.exit_code == 0, trained.output
    assert "trained on 89 rows" in trained.output  # 100 rows, 11 repeats left out (the first kept)
    for duplicates, kept_line in (("first", 60), ("last", 71)):
        out = tmp_path / f"{duplicates}.csv"
        result = runner.invoke(app, ["tsad", "detect", "--model", str(tmp_path / "m"), "--data", str(part), "--out",
                                     str(out), "--duplicates", duplicates, "--device", "cpu"])
        assert result.exit_code == 3 and "11 row(s) rejected" in result.output
        # exact floats (core.jobs.tables): pandas before 3.1 may read a value one unit in the last place off
        at_three = pd.read_csv(out, **EXACT_FLOATS).query("timestamp == '2014-03-09 03:00:00'")
        assert at_three["value"].tolist() == [float(lines[kept_line + 497].split(",")[1])]  # line L: file line L + 498
