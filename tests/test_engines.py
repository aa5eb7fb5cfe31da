"""The engine options without Ray running: validation, the missing extra, and the all-or-nothing
shard folder (a job that fails part-way leaves the previous output)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.engines import check_engine, ray_engine
from core.engines.ray_engine import Shard, read_shards, run_sharded
from core.errors import UserError

runner = CliRunner()


def test_engine_options_are_checked_together() -> None:
    check_engine("local")
    check_engine("ray", "auto", 2)
    with pytest.raises(UserError, match="unknown engine"):
        check_engine("spark")
    with pytest.raises(UserError, match="--workers is for --engine ray"):
        check_engine("local", None, 2)
    with pytest.raises(UserError, match="--address is for --engine ray"):
        check_engine("local", "auto", None)
    with pytest.raises(UserError, match="at least 1"):
        check_engine("ray", None, 0)


def test_without_ray_the_ray_engine_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 flat) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    for command in (["recae", "score", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "out")],
                    ["tsad", "score", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "x.csv"),
                     "--out", str(tmp_path / "out")]):
        result = runner.invoke(app, [*command, "--engine", "ray"])
        assert result.exit_code == 2, result.output
        assert 'pip install "ae-toolkit[ray]"' in flat(result.output)
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_local_engine_refuses_ray_options(tmp_path: Path, flat) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["recae", "score", "--model", str(tmp_path), "--out", str(tmp_path / "r.parquet"),
                                 "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers is for --engine ray" in flat(result.output)


class _Rows:
    """A worker stand-in: a unit is a number of rows."""

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def run(self, n: int) -> ray_engine.UnitResult:
        table = pd.DataFrame({"x": range(n * self.scale)}) if n else None
        return ray_engine.UnitResult(table, {"n": n})


def _in_process(units, worker_cls, kwargs, workers, on_done=None, fail_at=None):  # noqa: ANN001, ANN202
    """map_units without Ray: the same contract, units run here in reverse order."""
    worker = worker_cls(**kwargs)
    for i in reversed(range(len(units))):
        if i == fail_at:
            raise RuntimeError("worker lost for good")
        result = worker.run(units[i])
        rows = 0 if result.table is None else len(result.table)
        payload = ray_engine._parquet_bytes(result.table) if rows else b""
        yield i, {"rows": rows, **result.meta}, payload


def test_shards_are_named_by_unit_and_read_back_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_engine, "map_units", _in_process)
    shards = run_sharded(tmp_path / "out", [2, 0, 3], _Rows, {"scale": 1}, workers=2)
    assert [s.unit for s in shards] == [0, 1, 2]
    assert shards[1] == Shard(1, 0, None, {"n": 0})  # no rows: no shard file
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-00000.parquet", "part-00002.parquet"]
    assert read_shards(tmp_path / "out")["x"].tolist() == [0, 1, 0, 1, 2]


def test_a_job_failing_part_way_leaves_the_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_engine, "map_units", _in_process)
    run_sharded(tmp_path / "out", [1, 1], _Rows, {"scale": 1}, workers=1)
    before = read_shards(tmp_path / "out")
    monkeypatch.setattr(ray_engine, "map_units", lambda *a, **k: _in_process(*a, **k, fail_at=0))
    with pytest.raises(RuntimeError, match="lost"):
        run_sharded(tmp_path / "out", [5, 5], _Rows, {"scale": 1}, workers=1)  # unit 1 was written, then failure
    pd.testing.assert_frame_equal(read_shards(tmp_path / "out"), before)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.") and p.suffix == ".tmp"] == []


def test_a_unit_without_a_result_fails_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_engine, "map_units", lambda units, *a, **k: _in_process(units[:1], *a, **k))
    with pytest.raises(RuntimeError, match="no result for 1 of 2 units"):
        run_sharded(tmp_path / "out", [1, 1], _Rows, {"scale": 1}, workers=1)
    assert not (tmp_path / "out").exists()
