"""Finding submissions in every accepted layout, and refusing unsafe zips."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest

from autograder import submissions as S
from autograder.submissions import SubmissionError, find_submissions, safe_extract

NB = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def nb(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(NB)
    return path


def make_zip(path: Path, entries: dict[str, str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_nbgrader_submitted_layout(tmp_path):
    course = tmp_path / "course"
    for student in ("bob", "alice"):
        nb(course / "submitted" / student / "fcn_segmentation" / "fcn_segmentation.ipynb")
        nb(course / "submitted" / student / "fcn_segmentation" / "upsampling_and_iou.ipynb")
    (course / "submitted" / "carol" / "fcn_segmentation").mkdir(parents=True)
    for root in (course, course / "submitted"):
        subs = find_submissions([root], tmp_path / "w")
        assert [s.student for s in subs] == ["alice", "bob", "carol"]
        assert sorted(subs[0].notebooks) == ["fcn_segmentation", "upsampling_and_iou"]
        assert subs[0].error is None
        assert "no notebooks" in subs[2].error


def test_folder_per_student_and_loose_notebooks(tmp_path):
    nb(tmp_path / "class" / "alice" / "fcn_segmentation.ipynb")
    nb(tmp_path / "class" / "bob" / "upsampling_and_iou.ipynb")
    subs = find_submissions([tmp_path / "class"], tmp_path / "w")
    assert {s.student: sorted(s.notebooks) for s in subs} == {
        "alice": ["fcn_segmentation"], "bob": ["upsampling_and_iou"]}
    nb(tmp_path / "dave" / "fcn_segmentation.ipynb")
    (s,) = find_submissions([tmp_path / "dave"], tmp_path / "w")
    assert s.student == "dave" and s.notebooks["fcn_segmentation"].is_file()


def test_zip_by_stem_and_by_manifest(tmp_path):
    make_zip(tmp_path / "in" / "alice.zip", {"fcn_segmentation.ipynb": NB, "sub/upsampling_and_iou.ipynb": NB})
    make_zip(tmp_path / "in" / "submission (3).zip", {
        "manifest.json": json.dumps({"student": "bob", "assignment": "fcn_segmentation"}),
        "fcn_segmentation.ipynb": NB, "README.txt": "ignored", "__MACOSX/._x.ipynb": "junk"})
    subs = find_submissions([tmp_path / "in"], tmp_path / "w")
    assert [s.student for s in subs] == ["alice", "bob"]
    assert sorted(subs[0].notebooks) == ["fcn_segmentation", "upsampling_and_iou"]
    assert list(subs[1].notebooks) == ["fcn_segmentation"]
    assert not list((tmp_path / "w").rglob("README.txt"))
    # a single zip path works too
    (one,) = find_submissions([tmp_path / "in" / "alice.zip"], tmp_path / "w2")
    assert one.student == "alice" and one.error is None


@pytest.mark.parametrize("name", ["../evil.ipynb", "/abs/evil.ipynb", "a/../../evil.ipynb", "C:/evil.ipynb",
                                  "a\\..\\evil.ipynb"])
def test_path_traversal_is_refused(tmp_path, name):
    z = make_zip(tmp_path / "mallory.zip", {"fcn_segmentation.ipynb": NB, name: NB})
    with pytest.raises(S.UnsafeZipError, match="not extracted"):
        safe_extract(z, tmp_path / "w" / "mallory")
    assert not (tmp_path / "evil.ipynb").exists()
    assert not (tmp_path / "w" / "mallory").exists()
    (s,) = find_submissions([z], tmp_path / "w")
    assert s.student == "mallory" and s.notebooks == {} and "not extracted" in s.error


def test_symlink_entry_is_refused(tmp_path):
    z = tmp_path / "eve.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("fcn_segmentation.ipynb")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(S.UnsafeZipError, match="symbolic link"):
        safe_extract(z, tmp_path / "w")


def test_zip_bomb_is_refused_without_extracting(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "MAX_ZIP_BYTES", 1_000_000)
    z = make_zip(tmp_path / "bomb.zip", {"fcn_segmentation.ipynb": b"0" * 5_000_000})
    assert z.stat().st_size < 50_000  # highly compressed
    with pytest.raises(S.UnsafeZipError, match="zip bomb"):
        safe_extract(z, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_zip_bomb_with_lying_header_is_caught_while_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "MAX_ZIP_BYTES", 1_000_000)
    z = make_zip(tmp_path / "liar.zip", {"fcn_segmentation.ipynb": b"0" * 3_000_000})
    # shrink the declared sizes so that only counting while reading can catch it
    orig = zipfile.ZipFile.infolist

    def lying(self):
        infos = orig(self)
        for i in infos:
            i.file_size = 10
        return infos

    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying)
    with pytest.raises((S.UnsafeZipError, zipfile.BadZipFile)):
        safe_extract(z, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_too_many_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "MAX_ZIP_ENTRIES", 5)
    z = make_zip(tmp_path / "many.zip", {f"f{i}.ipynb": NB for i in range(6)})
    with pytest.raises(S.UnsafeZipError, match="6 entries"):
        safe_extract(z, tmp_path / "w")


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(SubmissionError, match="no such file"):
        find_submissions([tmp_path / "nope"], tmp_path / "w")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SubmissionError, match="found no submissions"):
        find_submissions([tmp_path / "empty"], tmp_path / "w")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(SubmissionError, match="x.txt"):
        find_submissions([tmp_path / "x.txt"], tmp_path / "w")
    nb(tmp_path / "a" / "alice" / "n.ipynb")
    nb(tmp_path / "b" / "alice" / "n.ipynb")
    with pytest.raises(SubmissionError, match="submitted twice"):
        find_submissions([tmp_path / "a", tmp_path / "b"], tmp_path / "w")
    make_zip(tmp_path / "z" / "q.zip", {"manifest.json": json.dumps({"student": "../root"}), "n.ipynb": NB})
    (s,) = find_submissions([tmp_path / "z"], tmp_path / "w")
    assert s.error and "not usable as a folder name" in s.error
    assert not (tmp_path / "root").exists()
