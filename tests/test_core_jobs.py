"""Batch-job plumbing: input discovery, chunked reading, atomic table writes, manifests, idempotence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.errors import UserError
from core.jobs.hashing import file_digest
from core.jobs.manifest import RunManifest, is_up_to_date, manifest_path_for
from core.jobs.tables import TableWriter, expand_inputs, iter_table_chunks


def test_expand_inputs_file_folder_glob(tmp_path: Path) -> None:
    for name in ("b.csv", "a.parquet", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert expand_inputs(str(tmp_path)) == [tmp_path / "a.parquet", tmp_path / "b.csv"]
    assert expand_inputs(str(tmp_path / "*.csv")) == [tmp_path / "b.csv"]
    assert expand_inputs(str(tmp_path / "b.csv")) == [tmp_path / "b.csv"]
    with pytest.raises(UserError, match="does not exist"):
        expand_inputs(str(tmp_path / "missing.csv"))
    with pytest.raises(UserError, match="no CSV or Parquet"):
        expand_inputs(str(tmp_path / "*.json"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunked_round_trip(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"a": range(25), "b": [x / 2 for x in range(25)]})
    out = tmp_path / f"t{suffix}"
    with TableWriter(out) as writer:
        for start in range(0, 25, 10):
            writer.write(frame.iloc[start:start + 10])
    chunks = list(iter_table_chunks(out, chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), frame, check_dtype=False)


def test_semicolon_csv_is_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("x;y\n1;2\n3;4\n")
    assert list(next(iter_table_chunks(path)).columns) == ["x", "y"]


def test_crash_mid_write_keeps_old_output(tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    with TableWriter(out) as w:
        w.write(pd.DataFrame({"a": [1]}))
    before = out.read_bytes()
    with pytest.raises(RuntimeError):
        with TableWriter(out) as w:
            w.write(pd.DataFrame({"a": [2, 3]}))
            raise RuntimeError("killed")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]


def test_manifest_and_up_to_date(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("a\n1\n")
    out = tmp_path / "out.csv"
    out.write_text("a\n1\n")
    inputs = [{"path": str(src), "sha256": file_digest(src)}]
    man = RunManifest(job="test", model_path="m", model_hash="h1", params={"k": 1}, inputs=inputs,
                      outputs=[str(out)])
    man.reject(str(src), "bad number", row=3)
    man.finish(3)
    man.write(manifest_path_for(out))
    assert man.status == "partial"
    assert is_up_to_date(manifest_path_for(out), "h1", inputs, {"k": 1})
    assert not is_up_to_date(manifest_path_for(out), "h2", inputs, {"k": 1})
    assert not is_up_to_date(manifest_path_for(out), "h1", inputs, {"k": 2})
    src.write_text("a\n2\n")
    changed = [{"path": str(src), "sha256": file_digest(src)}]
    assert not is_up_to_date(manifest_path_for(out), "h1", changed, {"k": 1})
