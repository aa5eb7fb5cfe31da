"""Property tests: whatever bytes a user hands the file readers, they return data or raise the
project's own UserError (one line, exit 2 at the CLI), never a pandas, JSON or decoding error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import UserError

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# text that looks like a ratings table often enough to get past the header: ids, numbers, junk
_cell = st.one_of(st.integers(-5, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.text(max_size=6), st.sampled_from(["", "nan", "inf", "-0", "1e308", "1.5", '"', "\\x00"]))
_row = st.tuples(st.lists(_cell, max_size=5), st.sampled_from([",", ";", "\t", "::"])).map(lambda t: t[1].join(t[0]))
_table = st.lists(_row, max_size=12).map(lambda rows: "user,item,rating\n" + "\n".join(rows))
_bytes = st.one_of(st.binary(max_size=300), _table.map(lambda t: t.encode("utf-8", errors="surrogatepass")))


def _written(data: bytes, suffix: str) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    with handle:
        handle.write(data)
    return Path(handle.name)


def _only_user_errors(read, data: bytes, suffix: str) -> None:  # noqa: ANN001
    path = _written(data, suffix)
    try:
        read(path)
    except UserError as exc:
        assert "\n" not in str(exc).strip(), str(exc)  # one line
    finally:
        path.unlink()


@SETTINGS
@given(data=_bytes)
def test_ratings_reader_raises_only_user_errors(data: bytes) -> None:
    from recae.datasets import load_ratings_file

    _only_user_errors(load_ratings_file, data, ".csv")
    _only_user_errors(lambda p: load_ratings_file(p, scale=(1.0, 5.0)), data, ".csv")


@SETTINGS
@given(data=_bytes)
def test_users_list_reader_raises_only_user_errors(data: bytes) -> None:
    from recae.scoring import read_user_list

    _only_user_errors(read_user_list, data, ".txt")


@SETTINGS
@given(data=st.one_of(st.binary(max_size=300), st.just(b"PAR1" + b"\x00" * 40 + b"PAR1")))
def test_table_reader_raises_only_user_errors(data: bytes) -> None:
    from core.jobs.tables import read_table

    _only_user_errors(read_table, data, ".csv")
    _only_user_errors(read_table, data, ".parquet")


_json_text = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=20).map(lambda v: __import__("json").dumps(v))


@SETTINGS
@given(data=st.one_of(st.binary(max_size=200), _json_text.map(str.encode),
                      st.dictionaries(st.sampled_from(["version", "model_hash", "buffer", "offset", "parser", "x"]),
                                      st.one_of(st.just(1), st.text(max_size=3), st.lists(st.integers(), max_size=2)),
                                      max_size=5).map(lambda d: __import__("json").dumps(d).encode()),
                      st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)))
def test_monitor_state_reader_raises_only_user_errors(data: bytes) -> None:
    from tsad.stream import MonitorState

    _only_user_errors(MonitorState.load, data, ".json")


@pytest.mark.parametrize("depth", [10, 64, 65, 5000, 200_000])
def test_json_depth_is_bounded_not_a_crash(depth: int) -> None:
    from core.jsontext import MAX_DEPTH, parse_json

    text = "[" * depth + "]" * depth
    if depth <= MAX_DEPTH:
        assert parse_json(text, "x") == parse_json(text, "x")
    else:
        with pytest.raises(UserError, match="nested"):
            parse_json(text, "x")


def test_a_deeply_nested_stream_line_is_rejected_not_a_crash() -> None:
    from tsad.ingest import Layout, LineSplitter

    split = LineSplitter(Layout(["v"], None), "jsonl", "stdin")
    assert split.split("[" * 100_000 + "]" * 100_000, 7).reason == "not valid JSON"
    assert split.split('{"v": 1.5}', 8) == [1.5]


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "[1, 2]", '{"version": 1, "series": 3}', "{"])
def test_a_damaged_score_state_is_a_user_error(tmp_path: Path, text: str) -> None:
    from tsad.batch import STATE_FILE, ScoreState

    (tmp_path / STATE_FILE).write_text(text)
    with pytest.raises(UserError, match="unreadable"):
        ScoreState(tmp_path, det=None, model_hash="x", duplicates="first")  # type: ignore[arg-type]
