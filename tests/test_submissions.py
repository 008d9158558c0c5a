"""Finding submissions in every accepted layout, and refusing unsafe zips."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest

from autograder import submissions as S
from autograder.lms import parse_lms_name
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
    with pytest.raises(SubmissionError, match="submitted twice.*--keep latest"):
        find_submissions([tmp_path / "a", tmp_path / "b"], tmp_path / "w", keep="error")
    with pytest.raises(SubmissionError, match="--keep must be one of"):
        find_submissions([tmp_path / "a"], tmp_path / "w", keep="newest")
    make_zip(tmp_path / "z" / "q.zip", {"manifest.json": json.dumps({"student": "../root"}), "n.ipynb": NB})
    (s,) = find_submissions([tmp_path / "z"], tmp_path / "w")
    assert s.error and "not usable as a folder name" in s.error
    assert not (tmp_path / "root").exists()


# ----------------------------------------------------------------------------- duplicates and times

def nbgrader_student(root: Path, student: str, timestamp: str | None, text: str = NB) -> Path:
    folder = root / "submitted" / student / "fcn_segmentation"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fcn_segmentation.ipynb").write_text(text)
    if timestamp:
        (folder / "timestamp.txt").write_text(timestamp)
    return folder


def test_duplicates_keep_the_latest_by_default_and_report_the_others(tmp_path):
    nbgrader_student(tmp_path / "c1", "alice", "2026-12-01 10:00:00.000000 UTC")
    nbgrader_student(tmp_path / "c1", "bob", "2026-12-01 09:00:00 UTC")
    nbgrader_student(tmp_path / "c2", "alice", "2026-12-02 08:30:00.5 UTC")  # later: kept
    make_zip(tmp_path / "z" / "alice.zip", {  # earliest of the three, time from the manifest
        "manifest.json": json.dumps({"student": "alice", "created": "2026-11-30T12:00:00+00:00"}),
        "fcn_segmentation.ipynb": NB})
    paths = [tmp_path / "c2", tmp_path / "c1", tmp_path / "z" / "alice.zip"]
    subs = find_submissions(paths, tmp_path / "w")  # the batch goes on: no error
    assert [s.student for s in subs] == ["alice", "bob"]
    alice = subs[0]
    assert alice.source == tmp_path / "c2" / "submitted" / "alice" / "fcn_segmentation"
    assert (alice.submitted_at, alice.time_source) == ("2026-12-02T08:30:00+00:00", "nbgrader timestamp.txt")
    assert alice.keep == "latest" and len(alice.replaced) == 2
    assert {r["time_source"] for r in alice.replaced} == {"nbgrader timestamp.txt",
                                                          "manifest created (the student's clock)"}
    (line,) = S.duplicates_report(subs)
    assert line.startswith("alice: graded") and "keep latest" in line and "alice.zip" in line
    assert alice.intake()["replaced"] == alice.replaced and subs[1].replaced == []

    (early, _) = find_submissions(paths, tmp_path / "w2", keep="earliest")
    assert early.source == tmp_path / "z" / "alice.zip" and early.submitted_at == "2026-11-30T12:00:00+00:00"


def test_hash_without_intake_facts_is_unchanged(tmp_path):
    import hashlib

    nb(tmp_path / "alice" / "fcn_segmentation.ipynb")
    (sub,) = find_submissions([tmp_path / "alice"], tmp_path / "w")
    old = hashlib.sha256(b"fcn_segmentation\0" + NB.encode() + b"\0").hexdigest()
    assert sub.sha256() == old  # results graded before this change stay up to date


def test_intake_facts_change_the_hash_so_a_new_verdict_regrades(tmp_path):
    nbgrader_student(tmp_path, "alice", "2026-12-01 10:00:00 UTC")
    (sub,) = find_submissions([tmp_path], tmp_path / "w")
    before = sub.sha256()
    sub.late = {"late": True, "fraction": 0.1}
    assert sub.sha256() != before


def test_manifest_facts_reach_the_intake(tmp_path):
    run = {"budget": "cpu", "smoke": False, "dataset": "full", "dataset_sha256": "ab" * 32,
           "kit_version": "0.2.0", "allowed": []}
    make_zip(tmp_path / "in" / "x.zip", {"manifest.json": json.dumps({
        "student": "carol", "created": "2026-12-01T10:00:00Z", "forced": True,
        "problems": ["cell 'fcn8s' is missing"], "run": run, "notebooks": {}}), "fcn_segmentation.ipynb": NB})
    make_zip(tmp_path / "in" / "old.zip", {"manifest.json": json.dumps({"student": "dan"}),
                                           "fcn_segmentation.ipynb": NB})  # an old zip: no run, no created
    carol, dan = find_submissions([tmp_path / "in"], tmp_path / "w")
    facts = carol.intake()
    assert facts["manifest"] == {"created": "2026-12-01T10:00:00Z", "forced": True,
                                 "problems": ["cell 'fcn8s' is missing"], "run": run}
    assert facts["submitted_at"] == "2026-12-01T10:00:00+00:00"
    assert dan.intake()["manifest"] == {} and dan.submitted_at is None


# ----------------------------------------------------------------------------- LMS names

def test_lms_names_are_parsed():
    c = parse_lms_name("doecarol_LATE_222_333_fcn_segmentation-2.ipynb")
    assert (c.system, c.student, c.user_id, c.late, c.original) == (
        "canvas", "doecarol", "222", True, "fcn_segmentation.ipynb")
    c = parse_lms_name("doecarol_222_333_carol_fcn_segmentation-2.zip")
    assert (c.student, c.late, c.original) == ("doecarol", False, "carol_fcn_segmentation.zip")
    b = parse_lms_name("HW 3_jdoe_attempt_2026-12-01-23-59-59_upsampling_and_iou.ipynb")
    assert (b.system, b.student, b.submitted_at, b.original) == (
        "blackboard", "jdoe", "2026-12-01T23:59:59+00:00", "upsampling_and_iou.ipynb")
    m = parse_lms_name("Carol Doe_4411_assignsubmission_file_", folder=True)
    assert (m.system, m.student, m.user_id) == ("moodle", "Carol_Doe", "4411")
    assert parse_lms_name("fcn_segmentation.ipynb") is None and parse_lms_name("alice.zip") is None


def test_canvas_bulk_download_is_grouped_by_student(tmp_path):
    d = tmp_path / "canvas"
    nb(d / "doecarol_222_333_fcn_segmentation.ipynb")
    nb(d / "doecarol_222_334_upsampling_and_iou-1.ipynb")
    nb(d / "smithbob_LATE_444_555_fcn_segmentation.ipynb")
    nb(d / "smithbob_LATE_444_556_fcn_segmentation-1.ipynb")  # the later upload of the same notebook
    make_zip(d / "leeann_777_888_ann_fcn_segmentation-2.zip", {  # the manifest claims someone else
        "manifest.json": json.dumps({"student": "bob"}), "fcn_segmentation.ipynb": NB})
    subs = find_submissions([d], tmp_path / "w")
    assert [s.student for s in subs] == ["doecarol", "leeann", "smithbob"]
    carol, ann, bob = subs
    assert sorted(carol.notebooks) == ["fcn_segmentation", "upsampling_and_iou"]
    assert carol.lms == {"system": "canvas", "user_id": "222", "late": False}
    assert bob.lms["late"] is True and bob.notebooks["fcn_segmentation"].name.endswith("556_fcn_segmentation-1.ipynb")
    assert ann.lms["user_id"] == "777" and "manifest names student 'bob'" in ann.warnings[0]


def test_two_canvas_users_with_one_name_stay_apart(tmp_path):
    d = tmp_path / "canvas"
    nb(d / "smithjohn_101_1_fcn_segmentation.ipynb")
    nb(d / "smithjohn_202_2_fcn_segmentation.ipynb")
    subs = find_submissions([d], tmp_path / "w")
    assert [s.student for s in subs] == ["smithjohn_101", "smithjohn_202"]


def test_blackboard_attempts_are_resubmissions_and_the_latest_is_kept(tmp_path):
    d = tmp_path / "bb"
    nb(d / "HW3_jdoe_attempt_2026-12-01-10-00-00_fcn_segmentation.ipynb")
    nb(d / "HW3_jdoe_attempt_2026-12-02-10-00-00_fcn_segmentation.ipynb")
    (sub,) = find_submissions([d], tmp_path / "w")
    assert sub.submitted_at == "2026-12-02T10:00:00+00:00" and sub.time_source == "LMS file name"
    assert len(sub.replaced) == 1


def test_moodle_folders_give_the_student_name(tmp_path):
    nb(tmp_path / "moodle" / "Carol Doe_4411_assignsubmission_file_" / "fcn_segmentation.ipynb")
    (sub,) = find_submissions([tmp_path / "moodle"], tmp_path / "w")
    assert sub.student == "Carol_Doe" and sub.lms["system"] == "moodle"


# ----------------------------------------------------------------------------- encodings

def test_latin1_notebook_is_transcoded_with_a_warning(tmp_path):
    text = NB.replace('"cells": []', '"cells": [], "x": "caf\u00e9 na\u00efve \u00bd"')
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "fcn_segmentation.ipynb").write_bytes(text.encode("cp1252"))
    nb(tmp_path / "alice" / "upsampling_and_iou.ipynb")
    (sub,) = find_submissions([tmp_path / "alice"], tmp_path / "w")
    path = sub.notebooks["fcn_segmentation"]
    assert path.is_relative_to(tmp_path / "w") and "café naïve ½" in path.read_text(encoding="utf-8")
    assert sub.notebooks["upsampling_and_iou"] == tmp_path / "alice" / "upsampling_and_iou.ipynb"
    (warning,) = sub.warnings
    assert "fcn_segmentation.ipynb is not UTF-8" in warning and "cp1252" in warning
    assert S.decode_notebook_bytes(b"\x81\x8d") == ("\x81\x8d", "latin-1")  # undefined in cp1252
    assert S.decode_notebook_bytes("\ufeff{}".encode()) == ("{}", "utf-8")
