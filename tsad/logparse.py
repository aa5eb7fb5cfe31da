"""Raw log lines → records (line number, timestamp, level, content): the first step of log streams.

`parse_lines(lines, fmt)` is a generator over any iterable of text lines (a file, a socket, a
list): it keeps no state beyond the current line and the syslog year (below), so it streams. Each
line that matches the format yields a `LogRecord`; a line that does not is *never* fatal: it is
counted in the `ParseReport` passed in (`report.failed`, and its line number and reason in
`report.failures`, the first `MAX_KEPT_FAILURES` of them). Blank lines are skipped and counted
apart (`report.blank`). Line numbers are 1-based physical lines (`start` moves the origin, for a
reader that resumes).

Formats (`FORMATS`); the content is what follows the header, trimmed, and is what template
mining reads (never the header):

- `syslog` (alias `openssh`, `linux`): `Mon dd hh:mm:ss host process[pid]: content` (the `[pid]`
  is optional, the process name may hold spaces and parentheses, as in Linux's
  `sshd(pam_unix)[19939]:`). Syslog has no level: `level` is None.
- `bgl` (Blue Gene/L): `LABEL EPOCH yyyy.mm.dd NODE yyyy-mm-dd-hh.mm.ss.ffffff NODE TYPE COMPONENT
  LEVEL content`; the timestamp is the fifth field, the level the ninth, and LABEL (`-` for a
  normal line, otherwise the alert category) is kept in `label`.
- `thunderbird`: `LABEL EPOCH yyyy.mm.dd USER Mon dd hh:mm:ss LOCATION process[pid]: content`;
  the date field gives the year. `label` as for bgl; no level.
- `hdfs`: `yymmdd hhmmss PID LEVEL component: content`.
- `apache` (error log): `[Day Mon dd hh:mm:ss yyyy] [level] content`.
- `jsonl`: one JSON object per line; `time_field`, `level_field`, `message_field` (default
  `time`, `level`, `message`) name the keys. The message must be a string; the time and level may
  be absent (None). A time is a string pandas can read (with a four-digit year) or a number of
  Unix epoch seconds.
- `regex` (`--log-regex`): a Python regular expression with named groups; `content` is required,
  `time` and `level` are optional. The whole line must match (`fullmatch`). The time group is read
  like a jsonl time string.

Timestamps are `pandas.Timestamp` without a zone (zone-aware stamps are converted to UTC first,
as tsad.ingest does), or None when the format has none.

Syslog year rule. A syslog stamp has no year. The first line gets `year` (default: the current
year when parsing starts); after that the year is carried from line to line:
- the month going back by two or more months from the previous line's (Dec → Jan, Nov → Jan,
  Dec → Feb) is a new year: the year advances by one;
- the month going back by one (Feb → Jan) is a late line around a month boundary, not a new year;
- the month going *forward* by ten or more (Jan → Dec, Jan → Nov) is a late line of the previous
  year: it gets year − 1 and does not move the carried month, so Dec 31 / Jan 1 / Dec 31 / Jan 1
  stays in two years instead of climbing.
A day that does not exist in the year found (Feb 29) fails the line ("invalid date").
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from core.errors import UserError

MAX_KEPT_FAILURES = 1000  # line numbers kept in a report; the count is always complete
MAX_LINE_CHARS = 1 << 20  # a longer line is a failure ("line too long"), not a memory hazard

_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)}


@dataclass(frozen=True)
class LogRecord:
    line: int  # 1-based physical line number
    time: pd.Timestamp | None
    level: str | None
    content: str
    label: str | None = None  # bgl / thunderbird alert category; None for a normal line or format


@dataclass
class ParseReport:
    """What `parse_lines` saw: filled in as the generator runs."""

    lines: int = 0
    parsed: int = 0
    blank: int = 0
    failed: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), first MAX_KEPT

    def fail(self, line: int, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_KEPT_FAILURES:
            self.failures.append((line, reason))

    def summary(self) -> str:
        text = f"{self.parsed} of {self.lines} lines parsed"
        if self.blank:
            text += f", {self.blank} blank"
        if self.failed:
            shown = ", ".join(str(n) for n, _ in self.failures[:10])
            more = "" if self.failed <= 10 else f" and {self.failed - 10} more"
            text += f", {self.failed} not matching the format (lines {shown}{more})"
        return text


class _LineError(Exception):
    """A line that does not parse; the message is the reason kept in the report."""


# ------------------------------------------------------------------------------------- formats
_SYSLOG = re.compile(
    r"(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<hms>\d{1,2}:\d{2}:\d{2})\s+(?P<host>\S+)\s+"
    r"(?P<proc>.*?)(?:\[(?P<pid>\d+)\])?:(?:\s(?P<content>.*))?")
_BGL = re.compile(
    r"(?P<label>\S+)\s+(?P<epoch>\d+)\s+(?P<date>\S+)\s+(?P<node>\S+)\s+"
    r"(?P<time>\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}(?:\.\d{1,6})?)\s+(?P<node2>\S+)\s+(?P<type>\S+)\s+"
    r"(?P<component>\S+)\s+(?P<level>\S+)(?:\s+(?P<content>.*))?")
_THUNDERBIRD = re.compile(
    r"(?P<label>\S+)\s+(?P<epoch>\d+)\s+(?P<date>\d{4}\.\d{2}\.\d{2})\s+(?P<user>\S+)\s+"
    r"(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<hms>\d{1,2}:\d{2}:\d{2})\s+(?P<location>\S+)\s+"
    r"(?P<proc>.*?)(?:\[(?P<pid>\d+)\])?:(?:\s(?P<content>.*))?")
_HDFS = re.compile(
    r"(?P<date>\d{6})\s+(?P<hms>\d{6})\s+(?P<pid>\d+)\s+(?P<level>[A-Z]+)\s+(?P<component>\S+?):"
    r"(?:\s(?P<content>.*))?")
_APACHE = re.compile(
    r"\[(?P<time>[A-Z][a-z]{2} [A-Z][a-z]{2} {1,2}\d{1,2} \d{2}:\d{2}:\d{2} \d{4})\]\s+\[(?P<level>[^\]]*)\]"
    r"(?:\s(?P<content>.*))?")

FORMATS = ("syslog", "openssh", "linux", "bgl", "thunderbird", "hdfs", "apache", "jsonl", "regex")
_ALIASES = {"openssh": "syslog", "linux": "syslog"}


def _stamp(value: _dt.datetime | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _read_time_text(text: str) -> pd.Timestamp:
    """A timestamp string (jsonl / custom regex): pandas' reading, with a four-digit year."""
    text = text.strip()
    if not re.search(r"\d{4}", text):
        raise _LineError(f"timestamp {text[:40]!r} names no four-digit year")
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _LineError(f"unreadable timestamp {text[:40]!r}: {exc}") from None
    if ts is pd.NaT:
        raise _LineError(f"unreadable timestamp {text[:40]!r}")
    return _stamp(ts)


@functools.lru_cache(maxsize=4096)  # lines of the same second share their timestamp (a pure function)
def _date(year: int, month: int, day: int, hms: str, micro: int = 0) -> pd.Timestamp:
    h, m, s = (int(x) for x in hms.split(":")) if ":" in hms else (int(hms[:2]), int(hms[2:4]), int(hms[4:6]))
    try:
        return pd.Timestamp(_dt.datetime(year, month, day, h, m, s, micro))
    except ValueError as exc:
        raise _LineError(f"invalid date: {exc}") from None


class SyslogYear:
    """The syslog year rule of the module docstring, as a small state machine (one per stream)."""

    def __init__(self, year: int | None = None):
        self.year = _dt.date.today().year if year is None else int(year)
        self.month: int | None = None

    def assign(self, month: int) -> int:
        if self.month is None:
            self.month = month
            return self.year
        step = month - self.month
        if step <= -2:
            self.year += 1
        elif step >= 10:
            return self.year - 1  # a late line of the previous year; the carried month stays
        self.month = month
        return self.year


def _content(m: re.Match) -> str:
    return (m.group("content") or "").strip()


def _label(m: re.Match) -> str | None:
    label = m.group("label")
    return None if label == "-" else label


def _month(name: str) -> int:
    try:
        return _MONTHS[name]
    except KeyError:
        raise _LineError(f"unknown month {name!r}") from None


# ------------------------------------------------------------------------------------- the parser
def make_line_parser(fmt: str = "syslog", *, regex: str | None = None, year: int | None = None,
                     time_field: str = "time", level_field: str = "level", message_field: str = "message"):
    """A function `(line_number, text) -> LogRecord` raising `_LineError` for a line that does not
    parse; bad *arguments* (unknown format, a regex that does not compile or lacks `content`) are
    a `UserError` here, before any line is read."""
    if regex is not None and fmt != "regex":
        if fmt not in ("syslog", "regex"):
            raise UserError(f"--log-regex replaces the log format; do not combine it with format {fmt!r}")
        fmt = "regex"
    if fmt not in FORMATS:
        raise UserError(f"unknown log format {fmt!r}; choose one of {', '.join(FORMATS)}")
    fmt = _ALIASES.get(fmt, fmt)

    if fmt == "syslog":
        years = SyslogYear(year)

        def parse(n: int, line: str) -> LogRecord:
            m = _SYSLOG.fullmatch(line)
            if m is None:
                raise _LineError("not a syslog line (Mon dd hh:mm:ss host process[pid]: message)")
            month = _month(m["mon"])
            # check the day before the year machine moves, so a bad line leaves it untouched
            _date(2000, month, int(m["day"]), m["hms"])  # 2000 is a leap year: Feb 29 passes here
            return LogRecord(n, _date(years.assign(month), month, int(m["day"]), m["hms"]), None, _content(m))

    elif fmt == "bgl":

        def parse(n: int, line: str) -> LogRecord:
            m = _BGL.fullmatch(line)
            if m is None:
                raise _LineError("not a BGL line (LABEL EPOCH DATE NODE TIME NODE TYPE COMPONENT LEVEL message)")
            d, t = m["time"][:10], m["time"][11:]  # yyyy-mm-dd, hh.mm.ss[.ffffff]
            parts = t.split(".")
            hms = ":".join(parts[:3])
            micro = int(parts[3].ljust(6, "0")) if len(parts) > 3 else 0
            y, mo, da = (int(x) for x in d.split("-"))
            return LogRecord(n, _date(y, mo, da, hms, micro), m["level"], _content(m), _label(m))

    elif fmt == "thunderbird":

        def parse(n: int, line: str) -> LogRecord:
            m = _THUNDERBIRD.fullmatch(line)
            if m is None:
                raise _LineError("not a Thunderbird line (LABEL EPOCH yyyy.mm.dd USER Mon dd hh:mm:ss "
                                 "LOCATION process[pid]: message)")
            y, mo, da = (int(x) for x in m["date"].split("."))
            return LogRecord(n, _date(y, mo, da, m["hms"]), None, _content(m), _label(m))

    elif fmt == "hdfs":

        def parse(n: int, line: str) -> LogRecord:
            m = _HDFS.fullmatch(line)
            if m is None:
                raise _LineError("not an HDFS line (yymmdd hhmmss PID LEVEL component: message)")
            d = m["date"]
            return LogRecord(n, _date(2000 + int(d[:2]), int(d[2:4]), int(d[4:6]), m["hms"]), m["level"], _content(m))

    elif fmt == "apache":

        def parse(n: int, line: str) -> LogRecord:
            m = _APACHE.fullmatch(line)
            if m is None:
                raise _LineError("not an Apache error-log line ([Day Mon dd hh:mm:ss yyyy] [level] message)")
            _, mon, day, hms, yr = m["time"].split()
            return LogRecord(n, _date(int(yr), _month(mon), int(day), hms), m["level"] or None, _content(m))

    elif fmt == "jsonl":
        for name, value in (("time", time_field), ("level", level_field), ("message", message_field)):
            if not isinstance(value, str) or not value:
                raise UserError(f"the jsonl {name} field must be a non-empty name")

        def parse(n: int, line: str) -> LogRecord:
            try:
                obj = json.loads(line)
            except RecursionError:
                raise _LineError("JSON nested too deeply") from None
            except ValueError as exc:
                raise _LineError(f"not JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise _LineError("not a JSON object")
            message = obj.get(message_field)
            if not isinstance(message, str):
                raise _LineError(f"no string {message_field!r} field")
            raw_time, ts = obj.get(time_field), None
            if isinstance(raw_time, bool):
                raise _LineError(f"{time_field!r} is a boolean, not a time")
            if isinstance(raw_time, (int, float)):
                if not math.isfinite(raw_time):
                    raise _LineError(f"{time_field!r} is not a finite number")
                try:
                    ts = _stamp(pd.Timestamp(raw_time, unit="s"))
                except (ValueError, OverflowError) as exc:
                    raise _LineError(f"epoch seconds out of range: {exc}") from None
            elif isinstance(raw_time, str):
                ts = _read_time_text(raw_time)
            elif raw_time is not None:
                raise _LineError(f"{time_field!r} is neither a string nor epoch seconds")
            level = obj.get(level_field)
            if level is not None and not isinstance(level, str):
                level = str(level)
            return LogRecord(n, ts, level, message.strip())

    else:  # regex
        if not regex:
            raise UserError("format 'regex' needs --log-regex with a named group 'content'")
        try:
            compiled = re.compile(regex)
        except (re.error, OverflowError, RecursionError) as exc:
            raise UserError(f"--log-regex does not compile: {exc}") from None
        groups = compiled.groupindex
        if "content" not in groups:
            raise UserError("--log-regex needs a named group 'content' (and may have 'time' and 'level')")
        has_time, has_level = "time" in groups, "level" in groups

        def parse(n: int, line: str) -> LogRecord:
            m = compiled.fullmatch(line)
            if m is None:
                raise _LineError("does not match --log-regex")
            ts = None
            if has_time and m["time"] is not None:
                ts = _read_time_text(m["time"])
            level = m["level"] if has_level else None
            return LogRecord(n, ts, level or None, _content(m))

    return parse


class LineParser:
    """One line at a time (a live stream, or `parse_lines` over a file): blank lines skipped, a
    line that fails its format counted in `report` with its number and reason, never raised."""

    def __init__(self, parse: Callable[[int, str], LogRecord], report: ParseReport | None = None) -> None:
        self.parse = parse  # a `make_line_parser` result (it holds the syslog-year state of one stream)
        self.report = report if report is not None else ParseReport()

    def feed(self, n: int, raw: str) -> LogRecord | None:
        report = self.report
        report.lines += 1
        line = raw.rstrip("\r\n")
        if not line.strip():
            report.blank += 1
            return None
        if len(line) > MAX_LINE_CHARS:
            report.fail(n, "line too long")
            return None
        try:
            record = self.parse(n, line)
        except _LineError as exc:
            report.fail(n, str(exc))
            return None
        report.parsed += 1
        return record

    def records(self, lines: Iterable[str], start: int = 1) -> Iterator[LogRecord]:
        for n, raw in enumerate(lines, start=start):
            record = self.feed(n, raw)
            if record is not None:
                yield record


def parse_lines(lines: Iterable[str], fmt: str = "syslog", *, report: ParseReport | None = None,
                start: int = 1, **options) -> Iterator[LogRecord]:
    """Yield a `LogRecord` for every line of `lines` that matches `fmt` (see the module docstring;
    `options` are `make_line_parser`'s: regex, year, time_field, level_field, message_field).
    Non-matching lines go to `report`. Argument errors raise `UserError` at the first `next()`."""
    yield from LineParser(make_line_parser(fmt, **options), report).records(lines, start)
