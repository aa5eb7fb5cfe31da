"""tsad.logparse (header formats, failures, syslog year) and tsad.logtemplates (mining, match-only,
plain-JSON state)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.errors import UserError
from tsad.logparse import ParseReport, parse_lines
from tsad.logtemplates import FORMAT_CONFIGS, OTHER_ID, MinerConfig, TemplateMiner


def _parse(lines, fmt, **kw):
    report = ParseReport()
    return list(parse_lines(lines, fmt, report=report, **kw)), report


FORMAT_LINES = {  # format -> (good line, expected (time, level, content, label))
    "syslog": ("Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
               ("2005-12-10 06:55:46", None, "Invalid user webmaster from 173.234.31.186", None)),
    "openssh": ("Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown",
                ("2005-06-14 15:16:02", None, "check pass; user unknown", None)),
    "bgl": ("KERNDTLB 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 "
            "R02-M1-N0-C:J12-U11 RAS KERNEL FATAL data TLB error interrupt",
            ("2005-06-03 15:42:50.675872", "FATAL", "data TLB error interrupt", "KERNDTLB")),
    "thunderbird": ("- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: "
                    "session closed for user root",
                    ("2005-11-09 12:01:01", None, "session closed for user root", None)),
    "hdfs": ("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_-38 terminating",
             ("2008-11-09 20:36:15", "INFO", "PacketResponder 1 for block blk_-38 terminating", None)),
    "apache": ("[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
               ("2005-12-04 04:47:44", "error", "mod_jk child workerEnv in error state 6", None)),
    "jsonl": ('{"time": "2024-03-01T10:00:00Z", "level": "warn", "message": "disk 3 full"}',
              ("2024-03-01 10:00:00", "warn", "disk 3 full", None)),
}


@pytest.mark.parametrize("fmt", sorted(FORMAT_LINES))
def test_header_formats_and_failures_counted(fmt):
    good, (time, level, content, label) = FORMAT_LINES[fmt]
    records, report = _parse([good, "this is not a log line {", "", good + "\n"], fmt, year=2005)
    assert [r.line for r in records] == [1, 4]
    rec = records[0]
    assert rec.time == pd.Timestamp(time) and rec.level == level and rec.content == content and rec.label == label
    assert report.failed == 1 and report.failures[0][0] == 2 and report.blank == 1 and report.parsed == 2
    assert "lines 2" in report.summary()


def test_custom_regex_and_jsonl_fields():
    rx = r"(?P<time>\S+ \S+) \[(?P<level>\w+)\] (?P<content>.*)"
    records, report = _parse(["2024-01-02 03:04:05 [INFO] started 4 workers", "garbage"], "regex", regex=rx)
    assert records[0].time == pd.Timestamp("2024-01-02 03:04:05") and records[0].level == "INFO"
    assert records[0].content == "started 4 workers" and report.failures[0][0] == 2
    records, report = _parse(['{"ts": 1700000000, "msg": "hi"}', '{"ts": 1}', "[1]"], "jsonl",
                             time_field="ts", message_field="msg")
    assert records[0].time == pd.Timestamp(1700000000, unit="s") and records[0].level is None
    assert [n for n, _ in report.failures] == [2, 3]
    with pytest.raises(UserError, match="content"):
        list(parse_lines(["x"], "regex", regex=r"(?P<time>\S+)"))
    with pytest.raises(UserError, match="compile"):
        list(parse_lines(["x"], "regex", regex=r"(?P<content>"))
    with pytest.raises(UserError, match="unknown log format"):
        list(parse_lines(["x"], "nope"))


def test_syslog_year_rollover():
    lines = ["Dec 30 23:59:00 h p: a", "Dec 31 23:59:59 h p[1]: b", "Jan  1 00:00:01 h p: c",
             "Dec 31 23:59:58 h p: late line", "Jan  2 00:00:00 h p: d", "Feb  1 00:00:00 h p: e",
             "Jan 31 23:59:59 h p: late across a month", "Feb 29 00:00:00 h p: no such day in 2025"]
    records, report = _parse(lines, "syslog", year=2024)
    years = [r.time.year for r in records]
    assert years == [2024, 2024, 2025, 2024, 2025, 2025, 2025]
    assert report.failures == [(8, report.failures[0][1])] and "invalid date" in report.failures[0][1]


def _mined(lines):
    miner = TemplateMiner(MinerConfig())
    ids = [miner.add(x).template_id for x in lines]
    return miner, ids


LINES = [f"Accepted password for user{u} from 10.0.{u}.7 port {4000 + u} ssh2" for u in range(5)] + \
        [f"Connection closed by 192.168.1.{u} [preauth]" for u in range(4)] + \
        ["session opened for user root by (uid=0)", "session opened for user bob by (uid=0)"]


def test_mining_groups_lines_that_differ_in_parameters():
    miner, ids = _mined(LINES)
    assert len(set(ids[:5])) == 1 and len(set(ids[5:9])) == 1 and len(set(ids[9:])) == 1
    assert len({ids[0], ids[5], ids[9]}) == 3
    ev = miner.match("Accepted password for carol from 172.16.0.1 port 22 ssh2")
    assert ev.template_id == ids[0] and ev.template == "Accepted password for <*> from <IP> port <NUM> ssh2"
    assert ev.parameters == ("carol", "172.16.0.1", "22")
    other = miner.match("kernel panic: not syncing")
    assert other.template_id == OTHER_ID and other.new
    assert len(miner) == 3  # matching learned nothing


def test_list_of_ids_is_one_parameter():
    miner = TemplateMiner(FORMAT_CONFIGS["hdfs"])
    a = miner.add("BLOCK* ask 10.0.0.1:50010 to delete blk_1")
    b = miner.add("BLOCK* ask 10.0.0.2:50010 to delete blk_2 blk_-3 blk_4")
    assert a.template_id == b.template_id and b.parameters == ("10.0.0.2:50010", "blk_2 blk_-3 blk_4")


def test_post_merge_keeps_ids_resolvable():
    miner = TemplateMiner(MinerConfig(depth=4, sim_th=0.9))
    first = miner.add("alpha job started on node7 fast").template_id
    second = miner.add("beta job started on node9 fast").template_id  # another first token, another leaf
    assert first != second
    miner.drain.id_to_cluster[second].log_template_tokens = ("<*>", "job", "started", "on", "<*>", "fast")
    assert miner.consolidate() == 1
    assert miner.resolve(second) == first and miner.resolve(first) == first
    assert miner.match("gamma job started on node3 fast").template_id == first


def test_save_load_round_trip(tmp_path):
    miner, ids = _mined(LINES)
    miner.consolidate()
    path = tmp_path / "templates.json"
    miner.save(path)
    text = path.read_text()
    assert "py/" not in text and "pickle" not in text.lower()
    state = json.loads(text)
    assert state["format"] == "tsad-log-templates" and {c["id"] for c in state["clusters"]} == set(ids)
    loaded = TemplateMiner.load(path)
    assert loaded.templates() == miner.templates() and loaded.config == miner.config
    probes = LINES + ["Accepted password for x from 1.2.3.4 port 9 ssh2", "something else entirely", ""]
    assert [loaded.match(p) for p in probes] == [miner.match(p) for p in probes]
    # learning goes on with the next ids, and a known line keeps its id
    assert loaded.add("Connection closed by 10.1.1.1 [preauth]").template_id == ids[5]
    assert loaded.add("brand new message here").template_id == max(ids) + 1


@pytest.mark.parametrize("damage", [
    lambda s: s[: len(s) // 2],
    lambda s: "[" * 5000,
    lambda s: json.dumps({**json.loads(s), "version": 99}),
    lambda s: json.dumps({**json.loads(s), "clusters": [{"id": "1", "tokens": ["a"], "size": 1}]}),
    lambda s: json.dumps({**json.loads(s), "clusters": [{"id": 1, "tokens": ["a b"], "size": 1}]}),
    lambda s: json.dumps({**json.loads(s), "config": {**json.loads(s)["config"], "masks": [["X", "("]]}}),
    lambda s: json.dumps({**json.loads(s), "aliases": {"1": 99}}),
    lambda s: json.dumps({"py/object": "os.system"}),
])
def test_damaged_state_is_one_user_error(tmp_path, damage):
    miner, _ = _mined(LINES)
    path = tmp_path / "t.json"
    miner.save(path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(UserError) as info:
        TemplateMiner.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_loghub_slice(data_dir):
    folder = data_dir / "loghub" / "OpenSSH"
    if not folder.is_dir():
        pytest.skip("no loghub/OpenSSH under AE_DATA_DIR")
    with open(folder / "OpenSSH_2k.log", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(200)]
    records, report = _parse(lines, "openssh", year=2005)
    assert report.failed == 0 and len(records) == 200
    miner = TemplateMiner(FORMAT_CONFIGS["openssh"])
    ids = miner.add_all(r.content for r in records)
    truth = pd.read_csv(folder / "OpenSSH_2k.log_structured.csv", nrows=200)["EventId"]
    # every mined group is a subset of one true group (no mixing) on this slice
    assert all(truth[[i for i, x in enumerate(ids) if x == g]].nunique() == 1 for g in set(ids))
