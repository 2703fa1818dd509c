"""Every form of Kaggle image competition `--data DIR` takes, read, played end to end, and rejected when broken."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import torch

from competition.fitting.data import PublicData, load_public
from competition.prepared import load_test_ids
from competition.errors import DataSourceError
from competition.preparing.folders import read_kaggle_folder
from competition.grading.grader import score_submission
from competition.grading.leaderboard import read as read_leaderboard
from competition.preparing.prepare import prepare_kaggle_folder
from competition.publish import submission_form
from competition.pipeline import run

from conftest import FRUITS, make_colour_images, silent, write_image_folder, write_kaggle_folder

FORMS = {
    # name: (writer keyword arguments, expected (C, H, W))
    "image folder, RGB PNG, class-name labels": (dict(form="image-folder"), (3, 12, 16)),
    "image folder, grey JPEG, integer labels": (dict(form="image-folder", channels=1, suffix=".jpg",
                                                     string_labels=False, height=10, width=10), (1, 10, 10)),
    "class subfolders, RGB JPEG, non-square": (dict(form="class-folders", suffix=".jpg", height=9, width=14),
                                               (3, 9, 14)),
}


def prepared(folder, tmp_path, **kwargs) -> PublicData:
    """The public data a run trains on, prepared from `folder`."""
    return load_public(prepare_kaggle_folder(folder, tmp_path / "data", log=silent, **kwargs).public)


@pytest.mark.parametrize("form", FORMS)
def test_folder_is_read_with_its_shape_classes_and_ids(tmp_path, form):
    kwargs, shape = FORMS[form]
    folder = write_image_folder(tmp_path / "comp", **kwargs)
    read = read_kaggle_folder(folder, log=silent)
    public = prepared(folder, tmp_path)
    assert public.image_shape == shape and public.competition.resize == "none"
    assert len(public.train_images) == 90 and len(public.test_images) == 30
    assert read.classes == (FRUITS if kwargs.get("string_labels", True) else ("0", "1", "2"))
    assert list(read.raw.test_ids[:2]) == ["91", "92"]
    assert (read.id_column, read.label_column) == ("id", "label")
    assert read.raw.test_labels is not None and read.usage is not None


def test_image_folder_keeps_the_pixels_it_read(tmp_path):
    folder = write_image_folder(tmp_path / "comp", n_train=6, n_test=3)
    images, labels = make_colour_images(6, seed=6)
    public = prepared(folder, tmp_path)
    assert np.array_equal(public.train_images.permute(0, 2, 3, 1).numpy(), images)   # PNG is lossless
    assert [public.classes[k] for k in public.train_labels] == [FRUITS[k] for k in labels]


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_run_plays_the_folder_and_submits_in_its_own_form(tmp_path, workspace, tiny_config, form):
    kwargs, shape = FORMS[form]
    folder = write_image_folder(tmp_path / "comp", **kwargs)
    cfg = tiny_config.replace(epochs=2, pseudo_rounds=0)
    result = run(cfg, workspace, folder, log=silent)
    paths = workspace.competition("comp")
    assert load_public(paths.public).image_shape == shape
    submission = pd.read_csv(result.published.submission, dtype=str)
    sample = pd.read_csv(paths.public / "sample_submission.csv", dtype=str)
    assert list(submission.columns) == ["id", "label"] == list(sample.columns)
    assert submission["id"].tolist() == sample["id"].tolist() == list(load_test_ids(paths.public))
    assert set(submission["label"]) <= set(read_kaggle_folder(folder, log=silent).classes)
    form_, ids = submission_form(paths)
    _, score = score_submission(result.published.submission, paths.solution, form_, ids)
    assert score.private.value == result.published.scores["submission"].private.value
    rows = read_leaderboard(workspace.leaderboard)
    assert [r.competition for r in rows] == ["comp"]
    assert rows[0].cv == pytest.approx(result.fit.final.cv.value, abs=5e-5)
    assert (result.run_dir / "report.html").stat().st_size > 10_000


def test_pixel_csv_folder_keeps_the_digit_recognizer_form(tmp_path):
    paths = prepare_kaggle_folder(write_kaggle_folder(tmp_path / "digits-csv"), tmp_path / "data", log=silent)
    assert {p.name for p in paths.public.iterdir()} >= {"train.csv", "test.csv", "sample_submission.csv",
                                                       "train_images.npy", "test_images.npy", "labels.npz",
                                                       "competition.json"}
    assert (paths.public / "sample_submission.csv").read_text().startswith("ImageId,Label\n1,0\n")
    assert paths.solution.read_text().startswith("ImageId,Label,Usage\n")


def test_string_labels_stay_strings_in_the_answers_and_the_sample(tmp_path):
    paths = prepare_kaggle_folder(write_image_folder(tmp_path / "comp"), tmp_path / "data", log=silent)
    solution = pd.read_csv(paths.solution, dtype=str)
    assert set(solution["label"]) <= set(FRUITS) and list(solution.columns) == ["id", "label", "Usage"]
    assert pd.read_csv(paths.public / "train_labels.csv", dtype=str)["label"].isin(FRUITS).all()


def test_a_labels_row_without_an_image_is_named(tmp_path):
    folder = write_image_folder(tmp_path / "comp")
    (folder / "train" / "5.png").unlink()
    with pytest.raises(DataSourceError, match=r"trainLabels.csv: row 6: no image for id '5'"):
        read_kaggle_folder(folder, log=silent)


def test_an_unreadable_image_is_named_with_its_path(tmp_path):
    folder = write_image_folder(tmp_path / "comp", form="class-folders")
    (folder / "train" / "banana" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataSourceError, match=r"banana/broken.png: cannot read the image"):
        prepared(folder, tmp_path)


def test_files_skipped_as_not_images_are_named_in_the_folders_notes(tmp_path):
    folder = write_image_folder(tmp_path / "comp", form="class-folders")
    read = read_kaggle_folder(folder, log=silent)
    (folder / "train" / "banana" / "photo.heic").write_bytes(b"a format the harness does not read")
    (folder / "train" / "banana" / ".DS_Store").write_bytes(b"")
    skipped = read_kaggle_folder(folder, log=silent)
    assert not any(note.startswith("skipped") for note in read.raw.notes)
    [note] = [n for n in skipped.raw.notes if n.startswith("skipped")]
    assert "skipped 1 file(s)" in note and "train/banana/photo.heic" in note and ".DS_Store" not in note
    assert len(skipped.raw.train_images) == len(read.raw.train_images)


def test_a_folder_in_no_known_form_lists_the_forms(tmp_path):
    (tmp_path / "comp").mkdir()
    with pytest.raises(DataSourceError, match=r"(?s)not a Kaggle-form folder.*train\.csv.*labels CSV.*<class>"):
        read_kaggle_folder(tmp_path / "comp")


def test_answers_that_miss_a_test_id_are_refused(tmp_path):
    folder = write_image_folder(tmp_path / "comp")
    solution = pd.read_csv(folder / "solution.csv", dtype=str)
    solution.iloc[:-1].to_csv(folder / "solution.csv", index=False)
    with pytest.raises(DataSourceError, match=r"solution.csv: id must be exactly the 30 test ids"):
        read_kaggle_folder(folder, log=silent)


def test_a_grey_and_colour_mix_is_read_as_colour(tmp_path):
    folder = write_image_folder(tmp_path / "comp", channels=1)
    Image.fromarray(np.full((12, 16, 3), 200, np.uint8)).save(folder / "train" / "1.png")
    public = prepared(folder, tmp_path)
    assert public.image_shape[0] == 3
    grey = np.asarray(Image.open(folder / "train" / "2.png"))
    assert np.array_equal(public.train_images[1].permute(1, 2, 0).numpy(), np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.slow
def test_a_log_loss_folder_submits_calibrated_probabilities_and_ranks_lowest_first(tmp_path, workspace, tiny_config):
    folder = write_image_folder(tmp_path / "comp", form="class-folders")
    result = run(tiny_config.replace(epochs=2, pseudo_rounds=0), workspace, folder, log=silent,
                 metric="log-loss")
    submission = pd.read_csv(result.published.submission)
    assert list(submission.columns) == ["id", *FRUITS]
    assert np.allclose(submission[list(FRUITS)].sum(axis=1), 1.0, atol=1e-5)
    assert result.fit.metric == "log-loss" and result.fit.final.cv.interval == "bootstrap"
    assert result.fit.final.temperature != 1.0         # fitted on OOF logits
    assert "## comp (log-loss, lower is better)" in workspace.leaderboard.read_text()
    form, ids = submission_form(workspace.competition("comp"))
    _, score = score_submission(result.published.submission, workspace.competition("comp").solution, form, ids,
                                "log-loss")
    assert score.metric == "log-loss" and score.overall.value == pytest.approx(
        result.published.scores["submission"].overall.value)


@pytest.mark.slow
def test_a_binary_folder_scored_by_roc_auc_submits_one_probability_column(tmp_path, workspace, tiny_config):
    """Aerial Cactus' form: id,has_cactus with P(the second class) in each row, graded by ROC AUC."""
    folder = write_image_folder(tmp_path / "cactus", string_labels=False, num_classes=2)
    for name in ("sampleSubmission.csv", "solution.csv", "trainLabels.csv"):
        frame = pd.read_csv(folder / name, dtype=str)
        frame.rename(columns={"label": "has_cactus"}).to_csv(folder / name, index=False)
    result = run(tiny_config.replace(epochs=2, pseudo_rounds=0), workspace, folder, log=silent,
                 metric="roc-auc")
    text = result.published.submission.read_text().splitlines()
    assert text[0] == "id,has_cactus"
    submission = pd.read_csv(result.published.submission)
    assert submission["has_cactus"].between(0, 1).all() and submission["has_cactus"].nunique() > 2
    assert result.fit.final.cv.interval == "bootstrap" and "## cactus (roc-auc, higher is better)" in \
        workspace.leaderboard.read_text()
    form, ids = submission_form(workspace.competition("cactus"))
    _, score = score_submission(result.published.submission, workspace.competition("cactus").solution, form, ids,
                                "roc-auc")
    assert score.overall.value == result.published.scores["submission"].overall.value


def test_ids_that_name_the_image_file_with_its_suffix_are_found(tmp_path):
    """Kaggle's Aerial Cactus form: train.csv (id,has_cactus) whose ids are file names, 0/1 labels."""
    folder = write_image_folder(tmp_path / "comp", string_labels=False, with_solution=False)
    labels = pd.read_csv(folder / "trainLabels.csv", dtype=str)
    labels["id"] = labels["id"] + ".png"
    labels.rename(columns={"label": "has_stripes"}).to_csv(folder / "train.csv", index=False)
    (folder / "trainLabels.csv").unlink()
    sample = pd.read_csv(folder / "sampleSubmission.csv", dtype=str)
    sample["id"] = sample["id"] + ".png"
    sample.rename(columns={"label": "has_stripes"}).to_csv(folder / "sampleSubmission.csv", index=False)
    read = read_kaggle_folder(folder, log=silent)
    assert read.form == "image-folder" and read.classes == ("0", "1", "2")
    assert (read.id_column, read.label_column) == ("id", "has_stripes") and read.raw.test_ids[0] == "91.png"
    plain = write_image_folder(tmp_path / "plain", string_labels=False, with_solution=False)
    assert torch.equal(prepared(folder, tmp_path).train_images, prepared(plain, tmp_path / "p").train_images)


def test_a_folder_that_changed_since_it_was_prepared_is_prepared_again(tmp_path, workspace):
    from competition.preparing.prepare import SplitOptions
    from competition.preparing.prepare import ensure_prepared
    folder = write_image_folder(tmp_path / "comp")
    lines: list[str] = []
    paths = ensure_prepared(workspace, "-", folder, SplitOptions(), lines.append)
    ensure_prepared(workspace, "-", folder, SplitOptions(), lines.append)
    assert not any("preparing it again" in line for line in lines)             # unchanged: reused
    labels = pd.read_csv(folder / "trainLabels.csv", dtype=str)
    labels.loc[0, "label"] = "cherry" if labels.loc[0, "label"] != "cherry" else "apple"
    labels.to_csv(folder / "trainLabels.csv", index=False)
    ensure_prepared(workspace, "-", folder, SplitOptions(), lines.append)
    assert any("files that changed in" in line for line in lines)
    assert pd.read_csv(paths.public / "train_labels.csv", dtype=str).loc[0, "label"] == labels.loc[0, "label"]
