"""Every competition, end to end on its own data form: 5-fold members and golden sample scores."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import pytest

from competition.preparing import competitions
from competition.fitting.data import load_public
from competition.fitting.fit import fit
from competition.grading.grader import score_submission
from competition.preparing.prepare import prepare
from competition.publish import submission_form

from conftest import silent, write_cifar_tarball, write_idx_set, write_png_folders


def _raw_files(name: str, raw: Path) -> None:
    """Offline stand-ins in each competition's own raw form (none needed for the bundled ones), so no test
    reads a data set the machine happens to have (Debian's /usr/share/datasets/fashion-mnist)."""
    if name in ("mnist", "fashion-mnist", "fashion-5k"):
        write_idx_set(raw, n_train=60, n_test=20)
    elif name == "notmnist":
        build = raw.parent / "build" / "notMNIST_small"
        write_png_folders(build, per_class=8, corrupt=0, wrong_size=0)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(build, arcname="notMNIST_small")
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "notMNIST_small.tar.gz").write_bytes(buffer.getvalue())
    elif name == "cifar10":
        write_cifar_tarball(raw / competitions.CIFAR10.name)


def _first_rows(load, count: int):
    """A competition's loader cut to the source's first `count` labelled and `count` test rows: its
    own files and curation, five folds of them in seconds (fashion-5k's 10,000 test images alone
    cost 9 views x 5 members of prediction)."""
    def load_first(raw_dir: Path, allow_download: bool) -> competitions.RawData:
        raw = load(raw_dir, allow_download)
        fields = ("train_images", "train_labels", "train_ids", "test_images", "test_labels", "test_ids")
        return dataclasses.replace(raw, **{f: getattr(raw, f)[:count] for f in fields if getattr(raw, f) is not None})
    return load_first


@pytest.mark.slow
@pytest.mark.parametrize("name", list(competitions.COMPETITIONS))
def test_five_fold_members_validate_every_labelled_image_on_every_competition(tmp_path, tiny_config, monkeypatch,
                                                                              name):
    if name == "notmnist":      # the tarball stands in for the real one; its size is not the real size
        monkeypatch.setattr(competitions, "NOTMNIST_SMALL", competitions.RemoteFile(
            "notMNIST_small.tar.gz", (), size=None))
    competition = competitions.COMPETITIONS[name]
    monkeypatch.setitem(competitions.COMPETITIONS, name,
                        dataclasses.replace(competition, load=_first_rows(competition.load, 1000)))
    _raw_files(name, tmp_path / "data" / name / "raw")
    paths = prepare(name, tmp_path / "data", allow_download=False, log=silent)
    cfg = tiny_config.replace(competition=name, folds=5, epochs=1, pseudo_rounds=0, batch_size=32)
    result = fit(cfg, paths.public, tmp_path / "run", log=silent)
    train_rows = len(load_public(paths.public).train_labels)
    assert len(result.final.members) == 5 and result.final.oof.total == train_rows


# the all-zeros sample submission scores exactly the share of class 0 in each part of the hidden test
GOLDEN_SAMPLE_SCORES = {"digits": (13 / 108, 23 / 252), "mnist-5k": (27 / 300, 73 / 700)}


@pytest.mark.parametrize("name", sorted(GOLDEN_SAMPLE_SCORES))
def test_the_sample_submission_gets_its_golden_score(tmp_path, name):
    paths = prepare(name, tmp_path / "data", log=silent)
    _, score = score_submission(paths.public / "sample_submission.csv", paths.solution, *submission_form(paths))
    assert (score.public.value, score.private.value) == pytest.approx(GOLDEN_SAMPLE_SCORES[name])
