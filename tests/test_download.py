"""Tests of assignment_lib.download, offline: archives are built in tmp_path and fetched via file:// URLs."""

from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path

import pytest

from assignment_lib import data, download
from assignment_lib.download import DownloadError


def make_zip(src: Path, out: Path, top: str = "", tamper: str | None = None, drop: str | None = None) -> str:
    """Zip the files of ``src`` (optionally under a ``top`` folder) and return a file:// URL."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src).as_posix()
            if rel == drop or rel.startswith("splits/"):
                continue
            payload = path.read_bytes()
            if rel == tamper:
                payload = payload[:-1] + bytes([payload[-1] ^ 0xFF])
            zf.writestr(top + rel, payload)
    return out.as_uri()


@pytest.fixture
def sample_manifest(tmp_path, sample_root) -> Path:
    """A sha256 list for the sample's data files, in the format of datasets/cmp_facade_base.sha256."""
    lines = []
    for path in sorted(sample_root.rglob("*")):
        rel = path.relative_to(sample_root).as_posix()
        if path.is_file() and (rel.startswith("base/") or rel in ("label_names.txt", "readme.txt")):
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n")
    out = tmp_path / "sample.sha256"
    out.write_text("".join(lines))
    return out


def test_committed_manifest_matches_shared_copy(full_data_root, repo_root):
    ours = (repo_root / "datasets" / "cmp_facade_base.sha256").read_text().splitlines()
    shared = (full_data_root / "MANIFEST.sha256").read_text().splitlines()
    assert sorted(ours) == sorted(shared)


def test_committed_manifest_names_every_base_file(repo_root):
    names = set(download.read_manifest(repo_root / "datasets" / "cmp_facade_base.sha256"))
    expect = {f"base/cmp_b{i:04d}.{ext}" for i in range(1, 379) for ext in ("jpg", "png", "xml")}
    assert names == expect | {"label_names.txt", "readme.txt"}


@pytest.mark.parametrize("top", ["", "CMP_facade_DB_base/"])
def test_download_sample_archive(tmp_path, sample_root, sample_manifest, top):
    url = make_zip(sample_root, tmp_path / "a.zip", top=top)
    dest = tmp_path / "cmp"
    assert download.download(dest, url, manifest=sample_manifest) == dest.resolve()
    assert not (tmp_path / "cmp.partial").exists()
    assert data.find_data_root(dest) == dest
    image, target = data.read_pair(dest, "cmp_b0023")
    assert image.shape[:2] == target.shape
    # a second run finds the verified copy and fetches nothing (the URL is dead)
    download.download(dest, "http://127.0.0.1:9/none.zip", manifest=sample_manifest)


def test_tampered_file_fails_naming_it(tmp_path, sample_root, sample_manifest):
    url = make_zip(sample_root, tmp_path / "a.zip", tamper="base/cmp_b0087.png")
    dest = tmp_path / "cmp"
    with pytest.raises(DownloadError, match=r"sha256 mismatch for 1 file\(s\): base/cmp_b0087\.png"):
        download.download(dest, url, manifest=sample_manifest)
    assert not dest.exists() and not (tmp_path / "cmp.partial").exists()


def test_missing_file_fails_naming_it(tmp_path, sample_root, sample_manifest):
    url = make_zip(sample_root, tmp_path / "a.zip", drop="base/cmp_b0033.xml")
    with pytest.raises(DownloadError, match=r"missing file base/cmp_b0033\.xml"):
        download.download(tmp_path / "cmp", url, manifest=sample_manifest)


def test_not_a_zip(tmp_path, sample_manifest):
    bad = tmp_path / "a.zip"
    bad.write_text("<html>not found</html>")
    with pytest.raises(DownloadError, match="not a valid zip"):
        download.download(tmp_path / "cmp", bad.as_uri(), manifest=sample_manifest)


def test_unreachable_url_fails_fast_with_help(tmp_path, capsys):
    start = time.monotonic()
    rc = download.main(["--dest", str(tmp_path / "cmp"), "--url", "http://127.0.0.1:9/CMP_facade_DB_base.zip"])
    assert time.monotonic() - start < 5
    assert rc == 1
    err = capsys.readouterr().err
    assert "cannot download http://127.0.0.1:9/" in err
    assert str(tmp_path / "cmp") in err and "CMP_FACADE_ROOT" in err
    assert not (tmp_path / "cmp.partial").exists()


def test_full_archive_with_top_folder(tmp_path, full_data_root):
    url = make_zip(full_data_root, tmp_path / "CMP_facade_DB_base.zip", top="CMP_facade_DB_base/")
    dest = tmp_path / "cmp"
    assert download.main(["--dest", str(dest), "--url", url]) == 0
    assert len(data.split_ids("train", dest)) == 300


def test_member_escaping_dest_is_refused(tmp_path, sample_manifest):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("label_names.txt", "1 background 1\n")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DownloadError, match=r"unsafe member path '\.\./evil\.txt'"):
        download.download(tmp_path / "cmp", archive.as_uri(), manifest=sample_manifest)
    assert not (tmp_path / "evil.txt").exists()
