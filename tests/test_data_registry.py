"""The dataset registry: fetching local archives over file:// URLs, checksums, and archives that try
to write outside their staging folder."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import data.registry as reg
from core.errors import UserError

U_DATA = b"1\t10\t5\t881250949\n2\t20\t3\t891717742\n"
U_ITEM = "10|Toy Story (1995)|01-Jan-1995\n".encode("latin-1")
LABELS = b"chan_id,anomaly_sequences\nC-1,[[10, 20]]\n"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A zip holding `members` verbatim (writestr keeps absolute and `..` names as given) and symlinks."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix, so the mode in external_attr counts
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, archive: Path, files: dict[str, str | None],
              extra_sources: list[dict] | None = None) -> None:
    """Point the registry at a file listing one dataset, `toy`, shaped like the ml-100k entry."""
    doc = {"schema_version": 1, "datasets": {"toy": {
        "title": "Toy ratings", "licence": "MIT: test data", "homepage": "file://", "format": "tsv",
        "sources": [{"url": archive.as_uri(), "kind": "zip", "strip": "ml-100k/", "dest": "toy/"},
                    *(extra_sources or [])],
        "files": files,
    }}}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(reg, "REGISTRY_PATH", path)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty AE_DATA_DIR."""
    out = tmp_path / "data_root"
    out.mkdir()
    monkeypatch.setenv("AE_DATA_DIR", str(out))
    return out


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_good_local_zip_lands_under_the_data_dir(tmp_path: Path, root: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM,
                                          "ml-100k/README": b"not listed, not unpacked"})
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA), "toy/u.item": None})
    assert reg.missing_files("toy") == ["toy/u.data", "toy/u.item"]
    assert reg.ensure_dataset("toy", download=True) == root
    assert (root / "toy" / "u.data").read_bytes() == U_DATA
    assert (root / "toy" / "u.item").read_bytes() == U_ITEM
    assert _all_files(root) == ["toy", "toy/u.data", "toy/u.item"]  # no staging folder or archive left
    assert reg.verify("toy") == [] and reg.dataset_status() == {"toy": "present"}


def test_zip_and_plain_file_sources_together(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA})
    labels = tmp_path / "labels.csv"
    labels.write_bytes(LABELS)
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA), "toy/labels.csv": _md5(LABELS)},
              extra_sources=[{"url": labels.as_uri(), "kind": "file", "dest": "toy/labels.csv"}])
    assert sorted(reg.fetch("toy")) == ["toy/labels.csv", "toy/u.data"]
    assert (root / "toy" / "labels.csv").read_bytes() == LABELS
    assert labels.read_bytes() == LABELS  # the source was copied, not moved


def test_bad_checksum_fails_and_writes_nothing(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM})
    # u.data matches; u.item does not: not even the good file may be moved into place
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA), "toy/u.item": _md5(b"other")})
    with pytest.raises(UserError, match="checksum mismatch for toy/u.item"):
        reg.ensure_dataset("toy", download=True)
    assert _all_files(root) == []


def test_missing_member_fails_and_writes_nothing(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA})
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA), "toy/u.item": None})
    with pytest.raises(UserError, match="did not contain toy/u.item"):
        reg.fetch("toy")
    assert _all_files(root) == []


def test_unreachable_url_is_unavailable_not_bad_input(tmp_path: Path, root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import UnavailableError

    _registry(tmp_path, monkeypatch, tmp_path / "absent.zip", {"toy/u.data": None})
    with pytest.raises(UnavailableError, match="cannot download"):
        reg.fetch("toy")
    assert _all_files(root) == []
    result = _invoke("data", "fetch", "toy")
    assert result.exit_code == 1 and "cannot download" in result.output and "Traceback" not in result.output
    assert _all_files(root) == []


def test_not_a_zip_is_a_user_error(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "toy.zip"
    fake.write_bytes(b"<html>rate limited</html>")
    _registry(tmp_path, monkeypatch, fake, {"toy/u.data": None})
    with pytest.raises(UserError, match="not a valid zip"):
        reg.fetch("toy")
    assert _all_files(root) == []


def _escape_cases(tmp_path: Path) -> list[tuple[str, Path]]:
    """(member name, the file it would create if joined naively) for archives that try to escape."""
    outside = tmp_path / "outside"
    return [
        # staging is root/.fetch-toy-XXXX/staged/toy/: four levels up from there is tmp_path
        ("ml-100k/../../../../outside/evil.txt", outside / "evil.txt"),
        ("../outside/evil.txt", outside / "evil.txt"),
        (str(outside / "absolute.txt"), outside / "absolute.txt"),  # an absolute member name
        ("ml-100k/" + str(outside / "joined.txt"), outside / "joined.txt"),  # `ml-100k//...`: absolute once stripped
    ]


@pytest.mark.parametrize("case", range(4))
def test_members_escaping_the_staging_folder_are_refused(case: int, tmp_path: Path, root: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    name, would_be = _escape_cases(tmp_path)[case]
    (tmp_path / "outside").mkdir()
    archive = _zip(tmp_path / "evil.zip", {"ml-100k/u.data": U_DATA, name: b"pwned"})
    with zipfile.ZipFile(archive) as zf:
        assert name in zf.namelist()  # the archive really holds the hostile name
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA)})
    with pytest.raises(UserError, match="refusing archive"):
        reg.fetch("toy")
    assert not would_be.exists()
    assert _all_files(tmp_path / "outside") == []
    assert _all_files(root) == []


@pytest.mark.parametrize("name", ["C:/Windows/evil.txt", "ml-100k\\..\\..\\evil.txt", "ml-100k/a//b.txt"])
def test_drive_letters_backslashes_and_empty_components_are_refused(name: str, tmp_path: Path, root: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "evil.zip", {"ml-100k/u.data": U_DATA, name: b"pwned"})
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA)})
    with pytest.raises(UserError, match="unsafe"):
        reg.fetch("toy")
    assert _all_files(root) == []


def test_symlink_members_are_refused(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(U_DATA)  # a link to it would pass the checksum if it were followed
    archive = _zip(tmp_path / "evil.zip", {}, symlinks={"ml-100k/u.data": str(secret)})
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA)})
    with pytest.raises(UserError, match="symlink"):
        reg.fetch("toy")
    assert _all_files(root) == [] and not (root / "toy" / "u.data").is_symlink()


def test_links_and_odd_names_outside_the_selected_members_are_ignored(tmp_path: Path, root: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the members a dataset reads are unpacked, so a repository archive's own symlinks or odd file
    names elsewhere do not block it (but a `..` or absolute name anywhere still does, see above)."""
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA, "docs/a\\b.txt": b"x"},
                   symlinks={"docs/link": "/etc/passwd"})
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA)})
    assert reg.fetch("toy") == ["toy/u.data"]
    assert _all_files(root) == ["toy", "toy/u.data"]


def test_archive_larger_than_the_bound_is_refused(tmp_path: Path, root: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA})
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA)})
    monkeypatch.setattr(reg, "MAX_EXTRACT_BYTES", len(U_DATA) - 1)
    with pytest.raises(UserError, match="more than"):
        reg.fetch("toy")
    assert _all_files(root) == []
    monkeypatch.setattr(reg, "MAX_EXTRACT_BYTES", len(U_DATA))
    assert reg.fetch("toy") == ["toy/u.data"]


@pytest.mark.parametrize("rel", ["../escape.txt", "/abs/escape.txt"])
def test_registry_paths_are_checked_too(rel: str, tmp_path: Path, root: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA})
    _registry(tmp_path, monkeypatch, archive, {rel: None})
    for call in (reg.fetch, reg.verify, reg.missing_files):
        with pytest.raises(UserError, match="refusing registry file name"):
            call("toy")
    assert _all_files(root) == []


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "nab", "skab", "msl"])
def test_every_real_entry_goes_through_the_checked_path(name: str, tmp_path: Path, root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each registered dataset, fed an archive with an escaping member laid out like its own, refuses it
    before writing anything (so no dataset bypasses the checks)."""
    entry = reg.registry()[name]
    zip_source = next(s for s in entry["sources"] if s["kind"] == "zip")
    top = zip_source.get("strip", "").replace("*", "X")
    member = (zip_source.get("members") or [""])[0]
    # e.g. `ml-100k//tmp/.../outside.txt`: its own top folder, then an absolute path once that is stripped
    archive = _zip(tmp_path / "evil.zip", {f"{top}{member}{tmp_path / 'outside.txt'}": b"pwned"})
    monkeypatch.setattr(reg, "_download", lambda url, path, timeout: path.write_bytes(archive.read_bytes()))
    with pytest.raises(UserError, match="refusing archive"):
        reg.fetch(name)
    assert _all_files(root) == [] and not (tmp_path / "outside.txt").exists()


def _invoke(*args: str):  # noqa: ANN202
    from cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_fetch_verify_and_list(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA})
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA)})
    result = _invoke("data", "list")
    assert result.exit_code == 0, result.output
    assert "missing 1 of 1 files" in result.output and "Toy ratings" in result.output
    result = _invoke("data", "verify", "toy")
    assert result.exit_code == 1 and "missing or changed, first: toy/u.data" in result.output
    result = _invoke("data", "fetch", "toy", "--quiet")
    assert result.exit_code == 0, result.output
    assert f"toy is ready under {root}" in result.output
    result = _invoke("data", "verify", "toy")
    assert result.exit_code == 0 and "all checksums match" in result.output
    result = _invoke("data", "list")
    assert "present" in result.output
    (root / "toy" / "u.data").write_bytes(U_DATA + b"3\t30\t1\t1\n")  # changed after the fetch
    result = _invoke("data", "verify", "toy")
    assert result.exit_code == 1 and "toy/u.data" in result.output


def test_cli_fetch_of_a_tampered_archive_exits_2(tmp_path: Path, root: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(tmp_path / "toy.zip", {"ml-100k/u.data": U_DATA, "ml-100k/../../../x": b"pwned"})
    _registry(tmp_path, monkeypatch, archive, {"toy/u.data": _md5(U_DATA)})
    result = _invoke("data", "fetch", "toy", "--quiet")
    assert result.exit_code == 2 and "refusing archive" in result.output and "Traceback" not in result.output
    assert _all_files(root) == []
