"""The nine image competitions of mle-bench's low-complexity split (and whale-categorization, for MAP@5,
and plant-pathology-2021, for multi-label F1), each built in its real file layout
(folder and file names, CSV headers, id forms, sample submission) with a few dozen small synthetic
images, plus a `solution.csv` (the sample submission's columns and Usage), then read, played end to
end with one epoch, validated in the competition's own submission form and scored by its metric.

The layouts follow mle-bench's `mlebench/competitions/<name>/prepare.py`; the images are made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from competition.preparing.folders import read_kaggle_folder
from competition.grading.grader import score_submission
from competition.publish import submission_form
from competition.pipeline import run

from conftest import make_colour_images, silent

N_TRAIN, N_TEST = 48, 24


def photos(n: int, num_classes: int, seed: int, grey: bool = False, one_size: int | None = None
           ) -> tuple[list[np.ndarray], np.ndarray]:
    """Learnable images of varied sizes (crops of 20x24 between 14 and 20 px a side), or of one size."""
    images, labels = make_colour_images(n, 20, 24, 1 if grey else 3, num_classes, seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        h, w = (one_size, one_size) if one_size else (int(rng.integers(14, 21)), int(rng.integers(14, 21)))
        out.append(image[:h, :w])
    return out, labels


def save(folder: Path, name: str, image: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / name)


def save_all(folder: Path, ids: list, images: list[np.ndarray], suffix: str = "") -> None:
    """One file per image, named by its id (plus `suffix` where the ids have none)."""
    for i, image in zip(ids, images):
        save(folder, f"{i}{suffix}", image)


def usage(n: int) -> np.ndarray:
    return np.where(np.arange(n) % 3 == 0, "Public", "Private")


def write_csv(path: Path, columns: dict) -> None:
    pd.DataFrame(columns).to_csv(path, index=False)


def one_hot(labels: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    return {name: (labels == k).astype(int) for k, name in enumerate(names)}


def aerial_cactus(root: Path) -> None:
    """train.csv (id,has_cactus) with ids that are file names; train/, test/; sample id,has_cactus."""
    (train, y), (test, t) = photos(N_TRAIN, 2, 1, one_size=16), photos(N_TEST, 2, 2, one_size=16)
    ids = [f"{i:08x}.jpg" for i in range(N_TRAIN)]
    test_ids = [f"{i + 10_000:08x}.jpg" for i in range(N_TEST)]
    save_all(root / "train", ids, train)
    save_all(root / "test", test_ids, test)
    write_csv(root / "train.csv", {"id": ids, "has_cactus": y})
    write_csv(root / "sample_submission.csv", {"id": test_ids, "has_cactus": 0.5})
    write_csv(root / "solution.csv", {"id": test_ids, "has_cactus": t, "Usage": usage(N_TEST)})


def aptos(root: Path) -> None:
    """train.csv (id_code,diagnosis 0-4), train_images/*.png, test_images/*.png, test.csv (id_code)."""
    (train, y), (test, t) = photos(N_TRAIN, 5, 3), photos(N_TEST, 5, 4)
    ids, test_ids = [f"{i:012x}" for i in range(N_TRAIN)], [f"{i + 999:012x}" for i in range(N_TEST)]
    save_all(root / "train_images", ids, train, ".png")
    save_all(root / "test_images", test_ids, test, ".png")
    write_csv(root / "train.csv", {"id_code": ids, "diagnosis": y})
    write_csv(root / "test.csv", {"id_code": test_ids})
    write_csv(root / "sample_submission.csv", {"id_code": test_ids, "diagnosis": 0})
    write_csv(root / "solution.csv", {"id_code": test_ids, "diagnosis": t, "Usage": usage(N_TEST)})


BREEDS = ["affenpinscher", "beagle", "collie", "dingo"]


def dog_breed(root: Path) -> None:
    """labels.csv (id,breed), train/*.jpg, test/*.jpg; sample id + one probability column per breed."""
    (train, y), (test, t) = photos(N_TRAIN, 4, 5), photos(N_TEST, 4, 6)
    ids, test_ids = [f"{i:032x}" for i in range(N_TRAIN)], [f"{i + 77:032x}" for i in range(N_TEST)]
    save_all(root / "train", ids, train, ".jpg")
    save_all(root / "test", test_ids, test, ".jpg")
    write_csv(root / "labels.csv", {"id": ids, "breed": np.array(BREEDS)[y]})
    write_csv(root / "sample_submission.csv", {"id": test_ids, **{b: 1 / len(BREEDS) for b in BREEDS}})
    write_csv(root / "solution.csv", {"id": test_ids, **one_hot(t, BREEDS), "Usage": usage(N_TEST)})


def dogs_vs_cats(root: Path) -> None:
    """train/cat.N.jpg and dog.N.jpg, test/N.jpg; sample id,label = P(dog); answers 1 = dog."""
    (train, y), (test, t) = photos(N_TRAIN, 2, 7), photos(N_TEST, 2, 8)
    for n, (image, k) in enumerate(zip(train, y)):
        save(root / "train", f"{('cat', 'dog')[k]}.{n}.jpg", image)
    test_ids = list(range(1, N_TEST + 1))
    save_all(root / "test", test_ids, test, ".jpg")
    write_csv(root / "sample_submission.csv", {"id": test_ids, "label": 0.5})
    write_csv(root / "solution.csv", {"id": test_ids, "label": t, "Usage": usage(N_TEST)})


def histopathologic(root: Path) -> None:
    """train_labels.csv (id,label), train/*.tif, test/*.tif, all one size; sample id,label."""
    (train, y), (test, t) = photos(N_TRAIN, 2, 9, one_size=18), photos(N_TEST, 2, 10, one_size=18)
    ids, test_ids = [f"{i:040x}" for i in range(N_TRAIN)], [f"{i + 5:040x}f" for i in range(N_TEST)]
    save_all(root / "train", ids, train, ".tif")
    save_all(root / "test", test_ids, test, ".tif")
    write_csv(root / "train_labels.csv", {"id": ids, "label": y})
    write_csv(root / "sample_submission.csv", {"id": test_ids, "label": 0})
    write_csv(root / "solution.csv", {"id": test_ids, "label": t, "Usage": usage(N_TEST)})


SPECIES = ["Acer_Capillipes", "Alnus_Rubra", "Quercus_Ilex"]


def leaf(root: Path) -> None:
    """train.csv (id,species + shape features), test.csv, one images/ folder of grey leaves for both;
    sample id + one column per species."""
    (train, y), (test, t) = photos(N_TRAIN, 3, 11, grey=True), photos(N_TEST, 3, 12, grey=True)
    ids, test_ids = list(range(1, N_TRAIN + 1)), list(range(N_TRAIN + 1, N_TRAIN + N_TEST + 1))
    save_all(root / "images", ids + test_ids, train + test, ".jpg")
    features = {f"{kind}{j}": np.round(np.random.default_rng(j).random(N_TRAIN), 6)
                for kind in ("margin", "shape", "texture") for j in (1, 2)}
    write_csv(root / "train.csv", {"id": ids, "species": np.array(SPECIES)[y], **features})
    write_csv(root / "test.csv", {"id": test_ids, **{k: v[:N_TEST] for k, v in features.items()}})
    write_csv(root / "sample_submission.csv", {"id": test_ids, **{s: 1 / len(SPECIES) for s in SPECIES}})
    write_csv(root / "solution.csv", {"id": test_ids, **one_hot(t, SPECIES), "Usage": usage(N_TEST)})


DISEASES = ["healthy", "multiple_diseases", "rust", "scab"]


def plant_pathology(root: Path) -> None:
    """train.csv (image_id + one-hot healthy,multiple_diseases,rust,scab), test.csv, images/Train_N.jpg
    and Test_N.jpg in one folder; sample image_id + the four columns."""
    (train, y), (test, t) = photos(N_TRAIN, 4, 13), photos(N_TEST, 4, 14)
    ids, test_ids = [f"Train_{i}" for i in range(N_TRAIN)], [f"Test_{i}" for i in range(N_TEST)]
    save_all(root / "images", ids + test_ids, train + test, ".jpg")
    write_csv(root / "train.csv", {"image_id": ids, **one_hot(y, DISEASES)})
    write_csv(root / "test.csv", {"image_id": test_ids})
    write_csv(root / "sample_submission.csv", {"image_id": test_ids, **{d: 0.25 for d in DISEASES}})
    write_csv(root / "solution.csv", {"image_id": test_ids, **one_hot(t, DISEASES), "Usage": usage(N_TEST)})


CATHETERS = ["ETT - Abnormal", "ETT - Borderline", "ETT - Normal", "NGT - Normal", "CVC - Normal"]


def ranzcr(root: Path) -> None:
    """train.csv (StudyInstanceUID + one 0/1 column per catheter finding, several per image, PatientID);
    train/*.jpg, test/*.jpg; sample StudyInstanceUID + the columns: a multi-label competition."""
    (train, y), (test, t) = photos(N_TRAIN, 5, 15), photos(N_TEST, 5, 16)
    ids, test_ids = [f"1.2.826.0.{i}" for i in range(N_TRAIN)], [f"1.2.826.9.{i}" for i in range(N_TEST)]
    save_all(root / "train", ids, train, ".jpg")
    save_all(root / "test", test_ids, test, ".jpg")
    hot = one_hot(y, CATHETERS)
    hot["CVC - Normal"] = np.ones(N_TRAIN, int)            # most studies show a CVC beside another line
    write_csv(root / "train.csv", {"StudyInstanceUID": ids, **hot, "PatientID": [f"p{i % 7}" for i in range(N_TRAIN)]})
    write_csv(root / "sample_submission.csv", {"StudyInstanceUID": test_ids, **{c: 0 for c in CATHETERS}})
    answers = one_hot(t, CATHETERS)
    answers["CVC - Normal"] = np.ones(N_TEST, int)
    write_csv(root / "solution.csv", {"StudyInstanceUID": test_ids, **answers, "Usage": usage(N_TEST)})


def siim_isic(root: Path) -> None:
    """train.csv (image_name, patient and site columns, diagnosis, benign_malignant, target), DICOMs in
    train/ and test/, the JPEGs in jpeg/train/ and jpeg/test/; sample image_name,target."""
    (train, y), (test, t) = photos(N_TRAIN, 2, 17), photos(N_TEST, 2, 18)
    ids, test_ids = [f"ISIC_{i:07d}" for i in range(N_TRAIN)], [f"ISIC_{i + 500:07d}" for i in range(N_TEST)]
    for split, names, images in (("train", ids, train), ("test", test_ids, test)):
        (root / split).mkdir(parents=True)
        for i, image in zip(names, images):
            (root / split / f"{i}.dcm").write_bytes(b"DICM not an image Pillow reads")
            save(root / "jpeg" / split, f"{i}.jpg", image)
    patients = {"patient_id": [f"IP_{i % 9}" for i in range(N_TRAIN)], "sex": "male", "age_approx": 45.0,
                "anatom_site_general_challenge": "torso"}
    write_csv(root / "train.csv", {"image_name": ids, **patients, "diagnosis": np.where(y, "melanoma", "nevus"),
                                   "benign_malignant": np.where(y, "malignant", "benign"), "target": y})
    write_csv(root / "test.csv", {"image_name": test_ids, **{k: (v[:N_TEST] if isinstance(v, list) else v)
                                                              for k, v in patients.items()}})
    write_csv(root / "sample_submission.csv", {"image_name": test_ids, "target": 0})
    write_csv(root / "solution.csv", {"image_name": test_ids, "target": t, "Usage": usage(N_TEST)})


WHALES = ["new_whale", "w_0013924", "w_001ebbc", "w_002222a", "w_00289b1", "w_0040d91"]


def whales(root: Path) -> None:
    """Not of the nine, for MAP@5: train.csv (Image,Id), train/*.jpg, test/*.jpg; sample Image,Id with
    five space-separated whale ids a row."""
    (train, y), (test, t) = photos(N_TRAIN, 6, 19), photos(N_TEST, 6, 20)
    ids, test_ids = [f"{i:08x}.jpg" for i in range(N_TRAIN)], [f"{i + 3000:08x}.jpg" for i in range(N_TEST)]
    save_all(root / "train", ids, train)
    save_all(root / "test", test_ids, test)
    write_csv(root / "train.csv", {"Image": ids, "Id": np.array(WHALES)[y]})
    write_csv(root / "sample_submission.csv", {"Image": test_ids, "Id": " ".join(WHALES[:5])})
    write_csv(root / "solution.csv", {"Image": test_ids, "Id": np.array(WHALES)[t], "Usage": usage(N_TEST)})


LEAF_DISEASES = ["frog_eye_leaf_spot", "healthy", "rust", "scab"]


def plant_pathology_2021(root: Path) -> None:
    """Not of the nine, for multi-label F1: train.csv (image,labels) with space-separated labels, several
    an image, train_images/ and test_images/; sample image,labels."""
    (train, y), (test, t) = photos(N_TRAIN, 3, 21), photos(N_TEST, 3, 22)
    ids, test_ids = [f"{i:016x}.jpg" for i in range(N_TRAIN)], [f"{i + 800:016x}.jpg" for i in range(N_TEST)]
    save_all(root / "train_images", ids, train)
    save_all(root / "test_images", test_ids, test)

    def spelled(classes: np.ndarray) -> list[str]:    # class 2 is "scab frog_eye_leaf_spot": two labels
        names = ["healthy", "rust", "scab frog_eye_leaf_spot"]
        return [names[k] for k in classes]
    write_csv(root / "train.csv", {"image": ids, "labels": spelled(y)})
    write_csv(root / "sample_submission.csv", {"image": test_ids, "labels": "healthy"})
    write_csv(root / "solution.csv", {"image": test_ids, "labels": spelled(t), "Usage": usage(N_TEST)})


def sample_micro_f1(root: Path) -> float:
    """scikit-learn's micro-F1 of the sample submission ("healthy" for every image)."""
    truth = pd.read_csv(root / "solution.csv")["labels"]
    hot = np.array([[name in row.split() for name in LEAF_DISEASES] for row in truth], dtype=int)
    return float(f1_score(hot, np.tile(np.array(LEAF_DISEASES) == "healthy", (len(hot), 1)).astype(int),
                          average="micro"))


def sample_map_at_5(root: Path) -> float:
    """MAP@5 of the whale sample submission (the first five ids in that order, for every row)."""
    truth = pd.read_csv(root / "solution.csv")["Id"]
    return float(np.mean([1 / (WHALES.index(w) + 1) if WHALES.index(w) < 5 else 0.0 for w in truth]))


@dataclass(frozen=True)
class KaggleCompetition:
    build: Callable[[Path], None]
    metric: str
    header: tuple[str, ...]         # the submission's header, as Kaggle's sample submission has it
    sample_score: float | Callable[[Path], float]   # what the competition's own sample submission scores


COMPETITIONS = {
    "aerial-cactus-identification": KaggleCompetition(aerial_cactus, "roc-auc", ("id", "has_cactus"), 0.5),
    "aptos2019-blindness-detection": KaggleCompetition(aptos, "qwk", ("id_code", "diagnosis"), 0.0),
    "dog-breed-identification": KaggleCompetition(dog_breed, "log-loss", ("id", *BREEDS), float(np.log(4))),
    "dogs-vs-cats-redux-kernels-edition": KaggleCompetition(dogs_vs_cats, "log-loss", ("id", "label"),
                                                            float(np.log(2))),
    "histopathologic-cancer-detection": KaggleCompetition(histopathologic, "roc-auc", ("id", "label"), 0.5),
    "leaf-classification": KaggleCompetition(leaf, "log-loss", ("id", *SPECIES), float(np.log(3))),
    "plant-pathology-2020-fgvc7": KaggleCompetition(plant_pathology, "mean-roc-auc", ("image_id", *DISEASES), 0.5),
    "ranzcr-clip-catheter-line-classification": KaggleCompetition(ranzcr, "mean-roc-auc",
                                                                  ("StudyInstanceUID", *CATHETERS), 0.5),
    "siim-isic-melanoma-classification": KaggleCompetition(siim_isic, "roc-auc", ("image_name", "target"), 0.5),
    "whale-categorization-playground": KaggleCompetition(whales, "map@5", ("Image", "Id"), sample_map_at_5),
    "plant-pathology-2021-fgvc8": KaggleCompetition(plant_pathology_2021, "micro-f1", ("image", "labels"),
                                                    sample_micro_f1),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPETITIONS)
def test_each_competition_plays_in_its_own_form_and_is_scored_by_its_metric(name, tmp_path, workspace,
                                                                           tiny_config):
    spec = COMPETITIONS[name]
    folder = tmp_path / name
    spec.build(folder)
    result = run(tiny_config.replace(epochs=1, pseudo_rounds=0), workspace, folder, log=silent,
                 metric=spec.metric)
    paths = workspace.competition(name)
    form, ids = submission_form(paths)
    assert tuple(form.header) == spec.header
    sample = pd.read_csv(folder / next(p.name for p in folder.glob("sample*.csv")), dtype=str)
    assert [str(i) for i in ids] == sample[sample.columns[0]].tolist()          # the sample's ids, in its order
    written = result.published.submission.read_text().splitlines()
    assert written[0] == ",".join(spec.header) and len(written) == N_TEST + 1
    _, score = score_submission(result.published.submission, paths.solution, form, ids, spec.metric)
    assert score.metric == spec.metric and np.isfinite(score.overall.value)
    assert score.overall.value == result.published.scores["submission"].overall.value
    # the competition's own sample submission reads in this form and gets its known score
    _, golden = score_submission(folder / next(p.name for p in folder.glob("sample*.csv")), paths.solution, form,
                                 ids, spec.metric)
    expected = spec.sample_score(folder) if callable(spec.sample_score) else spec.sample_score
    assert golden.overall.value == pytest.approx(expected, abs=1e-12)


def test_extra_tabular_columns_are_ignored_and_said_so(tmp_path):
    siim_isic(tmp_path / "siim")
    lines: list[str] = []
    read = read_kaggle_folder(tmp_path / "siim", log=lines.append)
    assert (read.id_column, read.label_column, read.classes) == ("image_name", "target", ("0", "1"))
    assert any("patient_id, sex, age_approx, anatom_site_general_challenge, diagnosis, benign_malignant are not "
               "images or labels; ignored" in line for line in lines)
    assert all(p.parent.name == "train" and p.parent.parent.name == "jpeg" for p in read.raw.train_images)


@pytest.mark.slow
def test_a_multi_label_competition_trains_a_pseudo_label_round_on_confident_labels(tmp_path, workspace, tiny_config):
    plant_pathology_2021(tmp_path / "leaves")
    result = run(tiny_config.replace(epochs=2, pseudo_rounds=1, pseudo_threshold=0.3), workspace, tmp_path / "leaves",
                 log=silent, metric="micro-f1")
    assert len(result.fit.rounds) == 2 and result.fit.rounds[1].pseudo is not None
    pseudo = result.fit.rounds[1].pseudo
    assert pseudo.labels.ndim == 2 and len(pseudo.indices) > 0
    assert result.fit.final.decision.startswith("threshold")            # F1 of several labels: chosen on OOF
