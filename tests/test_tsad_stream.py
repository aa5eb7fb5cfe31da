"""Stream plumbing: following a file through rotation and truncation, defensive parsing, debouncing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from core.errors import UserError
from tsad.stream import AlertDebouncer, MonitorState, Record, RecordParser, Rejected, follow_lines


def test_follow_reads_whole_file_and_resumes_from_offset(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a\nb\nc\n")
    lines = list(follow_lines(path))
    assert [line for line, _, _ in lines] == ["a", "b", "c"]
    _, offset, inode = lines[1]
    assert [line for line, _, _ in follow_lines(path, offset=offset, inode=inode)] == ["c"]


def test_follow_restarts_after_truncation_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "in.log"
    path.write_text("1\n2\n")
    seen: list[str] = []

    def writer() -> None:
        time.sleep(0.15)
        with open(path, "a") as fh:
            fh.write("3\n")
        time.sleep(0.15)
        path.write_text("x\n")  # truncated: shorter than our offset
        time.sleep(0.15)
        os.rename(path, tmp_path / "in.log.1")
        path.write_text("r1\nr2\n")  # rotated: a new file under the same name

    t = threading.Thread(target=writer)
    t.start()
    for line, _, _ in follow_lines(path, follow=True, poll_seconds=0.02, idle_timeout=0.6):
        seen.append(line)
    t.join()
    assert seen == ["1", "2", "3", "x", "r1", "r2"]


def test_follow_holds_back_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "in.log"
    path.write_text("1\n2")
    got = [line for line, _, _ in follow_lines(path, follow=True, poll_seconds=0.02, idle_timeout=0.2)]
    assert got == ["1"]


def test_parser_rejects_bad_records_with_reasons() -> None:
    parser = RecordParser(["value"], "timestamp")
    lines = ["timestamp,value", "2024-01-01 00:00,1.5", "2024-01-01 00:05,abc", "2024-01-01 00:10",
             "nonsense-time,2", "2023-12-31 23:00,3", "2024-01-01 00:10,", "2024-01-01 00:10,4"]
    out = [parser.parse(line, i + 1) for i, line in enumerate(lines)]
    assert out[0] is None
    assert isinstance(out[1], Record) and out[1].values.tolist() == [1.5]
    reasons = [o.reason for o in out if isinstance(o, Rejected)]
    assert reasons[0].startswith("bad number") and "expected 2 fields" in reasons[1]
    assert "'nonsense-time' cannot be parsed" in reasons[2] and "out-of-order" in reasons[3]
    assert isinstance(out[6], Record) and out[6].values[0] == 1.5  # a missing reading: the last value
    assert isinstance(out[7], Rejected) and "duplicate" in out[7].reason


def test_parser_requires_model_columns_in_header() -> None:
    with pytest.raises(UserError, match="no column 'temp'"):
        RecordParser(["temp"], "timestamp").parse("timestamp,value", 1)


def test_jsonl_parser() -> None:
    parser = RecordParser(["a", "b"], None, fmt="jsonl")
    assert isinstance(parser.parse('{"a": 1, "b": 2}', 1), Record)
    assert parser.parse("{oops", 2).reason == "not valid JSON"
    assert "missing field b" in parser.parse('{"a": 1}', 3).reason


def test_debouncer_makes_one_alert_per_stretch() -> None:
    deb = AlertDebouncer(cooldown=2, threshold=0.9)
    flags = [0, 1, 1, 0, 1, 0, 0, 0, 0, 1]
    scores = [0.1, 0.95, 0.99, 0.2, 0.93, 0.1, 0.1, 0.1, 0.1, 0.97]
    alerts = []
    for i, (f, s) in enumerate(zip(flags, scores)):
        a = deb.update(i, f"t{i}", s, s, bool(f), ["x"])
        if a:
            alerts.append(a)
    assert len(alerts) == 1
    assert (alerts[0]["start"], alerts[0]["end"], alerts[0]["peak_time"]) == ("t1", "t4", "t2")
    assert alerts[0]["anomalous_records"] == 3
    last = deb.close()
    assert last is not None and last["start"] == "t9"


def test_debouncer_state_round_trip(tmp_path: Path) -> None:
    deb = AlertDebouncer(cooldown=1)
    deb.update(0, "t0", 2.0, 0.99, True, ["a"])
    state = MonitorState(model_hash="h", debouncer=deb.state())
    state.save(tmp_path / "s.json")
    again = AlertDebouncer(cooldown=1)
    again.restore(MonitorState.load(tmp_path / "s.json").debouncer)
    assert again.open is not None and again.open.start == "t0"
