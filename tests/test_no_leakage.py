"""Held-out answers never reach training code: by construction, and watched at run time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from competition.fitting.data import PublicData, load_public
from competition.prepared import PreparedCompetition
from competition.errors import DataSourceError
from competition.preparing.prepare import prepare
from competition.fitting.fit import fit

from conftest import silent

_watch: dict[str, object] = {"folder": None, "opened": []}


def _audit(event: str, args: tuple) -> None:
    folder = _watch["folder"]
    if folder is not None and event == "open" and isinstance(args[0], (str, Path)):
        if Path(args[0]).resolve().is_relative_to(folder):
            _watch["opened"].append(str(args[0]))


sys.addaudithook(_audit)     # audit hooks cannot be removed; this one is idle unless a test arms it


def test_public_data_has_no_field_for_test_labels():
    assert set(PublicData.__dataclass_fields__) == {"train_images", "train_labels", "test_images", "competition"}
    described = set(PreparedCompetition.__dataclass_fields__)
    assert not {f for f in described if "label" in f or "answer" in f or "solution" in f}


def test_training_code_refuses_any_folder_but_public(tmp_path):
    paths = prepare("digits", tmp_path, log=silent)
    with pytest.raises(DataSourceError, match="reads only a competition's public/ folder"):
        load_public(paths.private)


@pytest.mark.slow
def test_training_tta_and_pseudo_labelling_never_open_a_private_file(tmp_path, tiny_config):
    paths = prepare("digits", tmp_path / "data", log=silent)
    _watch["folder"], _watch["opened"] = paths.private.resolve(), []
    try:
        result = fit(tiny_config.replace(tta="on"), paths.public, tmp_path / "run", log=silent)
    finally:
        _watch["folder"] = None
    assert len(result.rounds) == 2 and result.rounds[1].pseudo is not None and result.final.tta
    assert _watch["opened"] == []


def test_the_watch_itself_sees_a_private_read(tmp_path):
    """Guards the guard: reading the answers while armed is recorded."""
    paths = prepare("digits", tmp_path, log=silent)
    _watch["folder"], _watch["opened"] = paths.private.resolve(), []
    try:
        paths.solution.read_text()
    finally:
        _watch["folder"] = None
    assert _watch["opened"] == [str(paths.solution)]


@pytest.mark.slow
def test_a_probe_and_the_fine_tune_beside_it_never_open_a_private_file(tmp_path, backbone_weights):
    """The probe's features, heads and pseudo-labels, and the fine-tune started from its head."""
    pytest.importorskip("timm")
    from competition.config import RunConfig
    from competition.preparing.prepare import prepare_kaggle_folder
    from test_images import write_dogs_vs_cats
    paths = prepare_kaggle_folder(write_dogs_vs_cats(tmp_path / "dvc"), tmp_path / "data", log=silent)
    cfg = RunConfig(models=("timm/test_efficientnet",), weights=str(backbone_weights), folds=2, epochs=1,
                    min_steps=0, batch_size=8, tta="on", pseudo_threshold=0.3, time_limit="none")
    _watch["folder"], _watch["opened"] = paths.private.resolve(), []
    try:
        result = fit(cfg, paths.public, tmp_path / "run", log=silent)
    finally:
        _watch["folder"] = None
    assert {m.model for m in result.rounds[0].members} == {"probe:timm/test_efficientnet", "timm/test_efficientnet"}
    assert len(result.rounds) == 2 and result.rounds[1].pseudo is not None
    assert _watch["opened"] == []
