"""timm backbones fine-tuned from pretrained weights: a state dict file offline, or timm's hub cache."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

timm = pytest.importorskip("timm", reason="timm is in the test extra: pip install -e '.[test]'")

from competition.cli import main                                    # noqa: E402
from competition.config import RunConfig                            # noqa: E402
from competition.errors import ConfigError                          # noqa: E402
from competition.fitting.models import create_model, resolve_weights        # noqa: E402
from competition.fitting.module import Classifier                           # noqa: E402
from competition.config import FINE_TUNE, SCRATCH                   # noqa: E402
from competition.fitting.policy import size_request                         # noqa: E402

from conftest import resolved                                       # noqa: E402
from test_images import write_dogs_vs_cats                          # noqa: E402

MODEL = "timm/test_efficientnet"         # timm's own ~100k-parameter test model


def test_a_weights_file_initialises_the_backbone_and_a_new_head_for_the_classes(backbone_weights):
    saved = torch.load(backbone_weights, weights_only=True)
    model = create_model(MODEL, num_classes=3, in_chans=3, weights=str(backbone_weights))
    assert torch.equal(model.conv_stem.weight, saved["conv_stem.weight"])
    assert model.get_classifier().out_features == 3
    untrained = create_model(MODEL, num_classes=3, in_chans=3)
    assert not torch.equal(untrained.conv_stem.weight, saved["conv_stem.weight"])


def test_fine_tuning_normalises_as_the_backbone_learnt_and_gives_it_a_share_of_the_heads_rate(backbone_weights):
    cfg = resolved(RunConfig(models=(MODEL,), weights=str(backbone_weights), lr=1e-3, backbone_lr=0.1,
                             normalise="backbone"), channels=3, stored_size=32, hflip=True)
    module = Classifier.from_config(cfg, model=MODEL, num_classes=2, image_shape=(3, 32, 32), mean=(0.5,) * 3,
                                    std=(0.2,) * 3, steps_per_epoch=4)
    assert module.mean == timm.models.get_pretrained_cfg("test_efficientnet").mean
    optimizer = module.configure_optimizers()["optimizer"]
    head = {id(p) for p in module.net.get_classifier().parameters()}
    rates = {("head" if all(id(p) in head for p in g["params"]) else "backbone"): g["initial_lr"] if "initial_lr" in g
             else g["lr"] for g in optimizer.param_groups}
    assert rates["head"] == pytest.approx(10 * rates["backbone"])
    scratch = Classifier.from_config(cfg.replace(weights="", normalise="data", input_size=32, probe="off"), model=MODEL,
                                     num_classes=2, image_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.2,) * 3,
                                     steps_per_epoch=4)
    assert scratch.mean == (0.5,) * 3 and len({g["lr"] for g in scratch.configure_optimizers()["optimizer"]
                                                .param_groups}) == 1


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """timm's hub cache as an empty folder, offline: what a machine without a network has."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def test_pretrained_offline_with_nothing_cached_names_the_cache_and_the_weights_route_before_training(
        tmp_path, offline_hub, capsys):
    folder = write_dogs_vs_cats(tmp_path / "dvc")
    status = main(["--root", str(tmp_path / "ws"), "run", "--time-limit", "none",
                   "--data", str(folder), "--model", MODEL, "--pretrained"])
    err = capsys.readouterr().err
    assert status == 1
    assert str(offline_hub) in err and "--weights FILE" in err and "test_efficientnet" in err
    assert not (tmp_path / "ws" / "submissions").exists() and not (tmp_path / "ws" / "data").exists()


def test_pretrained_weights_in_timms_cache_are_found_without_a_network(offline_hub, backbone_weights):
    hub_id = timm.models.get_pretrained_cfg("test_efficientnet").hf_hub_id
    repo = offline_hub / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").write_bytes(backbone_weights.read_bytes())
    found = resolve_weights(MODEL, pretrained=True, weights="")
    assert found == str(snapshot / "pytorch_model.bin")


def test_weights_that_are_not_there_or_for_a_registry_model_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--weights .*missing.pth: no such file"):
        resolve_weights(MODEL, pretrained=False, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="pretrained weights are for timm models"):
        RunConfig(models=("resnet-small",), pretrained=True)


def test_auto_image_size_is_a_pretrained_models_own_on_any_device_and_the_scratch_limit_else(backbone_weights):
    cfg = RunConfig(models=("timm/efficientnet_lite0",), weights=str(backbone_weights))
    assert size_request(cfg, "cuda").limit == size_request(cfg, "cpu").limit == 224      # the model's own
    assert size_request(cfg.replace(weights=""), "cpu").limit == 64                     # from scratch
    assert size_request(cfg.replace(weights=""), "cuda").limit == 128
    assert size_request(cfg.replace(image_size=96), "cpu").size == 96


def test_a_pretrained_backbone_gets_the_fine_tuning_recipe_unless_told_otherwise(backbone_weights):
    tuned = resolved(RunConfig(models=(MODEL,), weights=str(backbone_weights)), channels=3)
    assert {name: getattr(tuned, name) for name in FINE_TUNE} == FINE_TUNE
    scratch = resolved(RunConfig())
    assert {name: getattr(scratch, name) for name in SCRATCH} == SCRATCH
    assert resolved(RunConfig(models=(MODEL,), weights=str(backbone_weights), epochs=5), channels=3).epochs == 5
    assert RunConfig(models=(MODEL,), weights=str(backbone_weights)).epochs == "auto"     # until resolved


@pytest.mark.slow
def test_a_dogs_vs_cats_folder_is_fine_tuned_from_a_weights_file_and_submits_in_its_form(tmp_path, backbone_weights):
    folder = write_dogs_vs_cats(tmp_path / "dvc")
    root = tmp_path / "ws"
    status = main(["--root", str(root), "run", "--time-limit", "none",
                   "--data", str(folder), "--model", MODEL, "--weights",
                   str(backbone_weights), "--epochs", "1", "--folds", "2", "--pseudo-rounds", "0",
                   "--batch-size", "8"])
    assert status == 0
    submission = pd.read_csv(root / "submission.csv", dtype=str)
    assert list(submission.columns) == ["id", "label"] and set(submission["label"]) <= {"cat", "dog"}
    assert submission["id"].tolist() == [str(n) for n in range(1, 9)]
    [run_dir] = list((root / "submissions").iterdir())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["weights"] == str(backbone_weights) and config["image_size"] == 25     # the median shorter side
    again = main(["--root", str(root), "run", "--config", str(run_dir / "config.json"), "--data", str(folder)])
    assert again == 0
    first, second = sorted((root / "submissions").iterdir())
    assert (first / "submission.csv").read_bytes() == (second / "submission.csv").read_bytes()
