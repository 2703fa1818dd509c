"""The frozen-feature member (a linear probe), the pretrained default for colour photos, and the plan
that prices a probe against a fine-tune."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

timm = pytest.importorskip("timm", reason="timm is in the test extra: pip install -e '.[test]'")

from competition.fitting import policy                              # noqa: E402

from competition.fitting import measure, plan
from competition.cli import main                                            # noqa: E402
from competition.config import RunConfig                                    # noqa: E402
from competition.errors import ConfigError                                  # noqa: E402
from competition.fitting.members import PROBE_HEAD, plan_members                    # noqa: E402
from competition.fitting.models import WEIGHTS_ENV, create_model, find_weights, stem_normalisation  # noqa: E402
from competition.fitting.module import Classifier                                   # noqa: E402
from competition.fitting.probe import LinearHead, fit_linear_head, load_head_into   # noqa: E402

from conftest import resolved                                               # noqa: E402
from test_images import write_dogs_vs_cats                                  # noqa: E402
from competition.record import RunRecord                                    # noqa: E402

MODEL = "timm/test_efficientnet"


def separable(n: int, dims: int = 16, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (2 views, n, dims) whose class shifts one dimension, the second view a noisier copy."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = rng.normal(0, 1, (n, dims)) + 4 * np.eye(classes, dims)[labels]
    views = np.stack([x, x + rng.normal(0, 0.3, x.shape)])
    return torch.from_numpy(views).float(), torch.from_numpy(labels)


def test_a_linear_head_learns_separable_features_with_c_chosen_inside_and_logits_for_every_class():
    features, labels = separable(120)
    head = fit_linear_head(features, labels, num_classes=4)       # class 3 never seen in training
    assert head.C in (0.01, 0.1, 1.0)
    logits = head.logits(features)
    assert logits.shape == (2, 120, 4)
    assert (logits[0].argmax(1) == labels).float().mean() > 0.95
    assert (logits[..., 3] < logits[..., :3].min(-1).values).all()          # an absent class is never chosen


def test_a_binary_head_gives_two_logits_whose_softmax_is_the_regressions_sigmoid():
    features, labels = separable(80, classes=2)
    head = fit_linear_head(features, labels, num_classes=2, candidates=(0.1,))
    from sklearn.linear_model import LogisticRegression
    x = features.double().reshape(-1, features.shape[-1]).numpy()
    mean, std = x.mean(0), x.std(0) + 1e-6
    reference = LogisticRegression(C=0.1, max_iter=1000).fit((x - mean) / std, np.concatenate([labels.numpy()] * 2))
    ours = head.logits(features[0]).double().softmax(1)[:, 1].numpy()
    theirs = reference.predict_proba((features[0].double().numpy() - mean) / std)[:, 1]
    assert np.allclose(ours, theirs, atol=1e-4)


def test_a_multi_label_head_gives_each_label_its_own_logit():
    features, classes = separable(90, classes=3)
    labels = torch.stack([classes == 0, classes != 2, torch.zeros_like(classes, dtype=torch.bool)], 1).long()
    head = fit_linear_head(features, labels, num_classes=3)
    decided = (head.logits(features[0]) > 0).long()
    assert (decided[:, :2] == labels[:, :2]).float().mean() > 0.95 and (decided[:, 2] == 0).all()


def test_a_fine_tune_starts_its_classifier_from_the_probes_head(backbone_weights, tmp_path):
    net = create_model(MODEL, num_classes=2, in_chans=3, weights=str(backbone_weights))
    dims = net.get_classifier().in_features
    head = LinearHead(weight=torch.randn(2, dims), bias=torch.randn(2), C=0.1)
    load_head_into(net, head)
    assert torch.equal(net.get_classifier().weight, head.weight) and torch.equal(net.get_classifier().bias, head.bias)
    cfg = resolved(RunConfig(models=(MODEL,), weights=str(backbone_weights), normalise="backbone", folds=2),
                   channels=3, stored_size=32, hflip=True)
    assert cfg.member_models == ("probe:" + MODEL, MODEL) and cfg.ensemble == "greedy"
    specs = plan_members(cfg, 0, tmp_path / "public", tmp_path / "run")
    probes, tuned = specs[:2], specs[2:]
    assert [s.model for s in probes] == ["probe:" + MODEL] * 2 and all(s.features for s in probes)
    assert [s.head_from for s in tuned] == [str(p.out_dir) + "/" + PROBE_HEAD for p in probes]
    alone = plan_members(cfg.replace(probe="off"), 0, tmp_path / "public", tmp_path / "run")
    assert all(s.head_from is None for s in alone)


def test_a_fine_tune_trains_at_least_min_steps_in_as_many_epochs_as_that_needs():
    cfg = resolved(RunConfig(epochs=3, min_steps=120))
    assert cfg.member_epochs(steps_per_epoch=6) == 20 and cfg.member_epochs(steps_per_epoch=100) == 3


def test_the_stem_statistics_name_the_normalisation_the_weights_were_trained_with(tmp_path):
    """A net whose first batch norm recorded its stem's outputs on [-1, 1] inputs is told from one
    trained on the backbone's own mean and std, from unlabelled images alone."""
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8)
    for trained_on in ("inception", "backbone"):
        net = timm.create_model("test_efficientnet", num_classes=1000)
        from competition.fitting.models import normalisation
        mean, std = normalisation(MODEL, trained_on)
        x = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            stem = net.conv_stem(x)
            net.bn1.running_mean.copy_(stem.mean((0, 2, 3)))
            net.bn1.running_var.copy_(stem.var((0, 2, 3)))
        path = tmp_path / f"{trained_on}.pth"
        torch.save(net.state_dict(), path)
        assert stem_normalisation(MODEL, str(path), images) == trained_on


def test_weights_are_found_in_the_folder_the_environment_names(tmp_path, backbone_weights, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert find_weights(MODEL) == "" or "huggingface" in find_weights(MODEL)
    assert find_weights(MODEL, str(backbone_weights.parent)) == str(backbone_weights)
    monkeypatch.setenv(WEIGHTS_ENV, str(backbone_weights.parent))
    assert find_weights(MODEL) == str(backbone_weights)
    assert find_weights("timm/resnet18") == ""


def test_a_probe_without_weights_is_refused_naming_the_ways_to_give_them():
    with pytest.raises(ConfigError, match="probe = only: .*--weights FILE, --weights-dir DIR or --pretrained"):
        RunConfig(models=("resnet-small",), probe="only")


PROBE_RATES = plan.Rates(train=20.0, predict=60.0, member_setup_s=1.0, device="cpu", precision="32-true",
                           features=60.0, probe_fit_s=0.001)


def test_a_short_limit_plans_the_probe_alone_without_measuring_a_fine_tune(backbone_weights):
    cfg = resolved(RunConfig(models=(MODEL,), weights=str(backbone_weights), normalise="backbone"), channels=3,
                   labelled=1500, stored_size=224, hflip=True)
    measured = []
    planned = plan.plan(cfg, PROBE_RATES, limit_s=180, budget_s=170, labelled=1500, test=500, views=2,
                          large_data=False, free=frozenset(plan.PLANNED),
                          training_rates=lambda: measured.append(1) or PROBE_RATES)
    assert planned.fits and planned.config.probe == "only" and planned.config.pseudo_rounds == 1
    assert measured == [] and "linear probe" in planned.line()
    # the features (2 views of 2,000 images) and four heads a round are what it costs, the round's with
    # its pseudo-labelled rows (a quarter of each fold's, at most the test set)
    heads = 4 * 0.001 * 2 * (1125 + (1125 + 375))
    assert planned.estimate_s == pytest.approx(plan.PUBLISH_S + 2000 * 2 / 60 + heads)


def test_a_probe_that_leaves_most_of_the_limit_says_what_the_next_recipe_up_would_cost(backbone_weights):
    """Few photos and a fine-tune over the limit even at its bound: the plan line names the fine-tune
    and its least cost, and the run's record keeps them."""
    cfg = resolved(RunConfig(models=(MODEL,), weights=str(backbone_weights), normalise="backbone"), channels=3,
                   labelled=244, stored_size=224, hflip=True)
    planned = plan.plan(cfg, PROBE_RATES, limit_s=180, budget_s=170, labelled=244, test=152, views=2,
                          large_data=False, free=frozenset(plan.PLANNED), training_rates=lambda: PROBE_RATES)
    assert planned.config.probe == "only" and planned.unspent and not planned.richest
    # the nearest rung up: the probe and a fine-tune of at least 120 steps in each of 4 folds, no round
    assert (planned.richer.probe, planned.richer.pseudo_rounds, planned.richer.min_steps) == ("on", 0, 120)
    assert planned.richer_s > 170 * plan.SAFETY > 3 * planned.estimate_s
    assert "the next recipe up (4 fold(s) x the linear probe" in planned.line()
    assert "at least 120 steps" in planned.line() and "left unspent" in planned.line()
    assert planned.record()["next_recipe_up"]["estimate_s"] == round(planned.richer_s, 1)
    # a limit the fine-tune fits leaves nothing to explain
    roomy = plan.plan(cfg, PROBE_RATES, limit_s=4 * 3600, budget_s=4 * 3600, labelled=244, test=152, views=2,
                      large_data=False, free=frozenset(plan.PLANNED), training_rates=lambda: PROBE_RATES)
    assert roomy.config.probe == "on" and roomy.richer is None and "next recipe up" not in roomy.line()


def test_a_long_limit_measures_a_fine_tune_once_and_plans_it_beside_the_probe(backbone_weights):
    cfg = resolved(RunConfig(models=(MODEL,), weights=str(backbone_weights), normalise="backbone"), channels=3,
                   labelled=1500, stored_size=224, hflip=True)
    measured = []
    planned = plan.plan(cfg, PROBE_RATES, limit_s=4 * 3600, budget_s=4 * 3600, labelled=1500, test=500, views=2,
                          large_data=False, free=frozenset(plan.PLANNED),
                          training_rates=lambda: measured.append(1) or PROBE_RATES)
    assert planned.config.probe == "on" and measured == [1]
    assert "the linear probe" in planned.line() and "at least 120 steps" in planned.line()


def colour_folder(tmp_path):
    return write_dogs_vs_cats(tmp_path / "dvc", n_per_class=16, n_test=8)


@pytest.mark.slow
def test_colour_photos_with_weights_at_hand_play_the_probe_by_default_and_submit(tmp_path, backbone_weights,
                                                                               monkeypatch, capsys):
    """The model left to `auto`: the first pretrained backbone of the table whose weights are in the
    folder $COMPETITION_WEIGHTS names; its features once a run, a head per fold, a submission."""
    monkeypatch.setattr(policy, "BACKBONES", (MODEL,))
    monkeypatch.setenv(WEIGHTS_ENV, str(backbone_weights.parent))
    root = tmp_path / "ws"
    assert main(["--root", str(root), "run", "--data", str(colour_folder(tmp_path)), "--folds", "2",
                 "--probe", "only", "--time-limit", "none"]) == 0
    out = capsys.readouterr().out
    assert f"pretrained backbone(s) for colour photos, best first: {MODEL} (160 px)" in out and "features of" in out
    [run_dir] = (root / "submissions").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["models"] == [MODEL] and config["weights"] == str(backbone_weights)
    assert config["input_size"] == 160 and config["probe"] == "only" and config["image_size"] == 25
    assert (run_dir / "features" / "timm-test_efficientnet.pt").is_file()
    assert sorted(p.name for p in (run_dir / "round0").iterdir()) == \
        ["fold0-seed0-probe-timm-test_efficientnet", "fold1-seed0-probe-timm-test_efficientnet"]
    submission = pd.read_csv(root / "submission.csv", dtype=str)
    assert list(submission.columns) == ["id", "label"] and set(submission["label"]) <= {"cat", "dog"}
    assert RunRecord.read(run_dir).cv.value >= 0.9                        # tinted photos: the features tell them apart


@pytest.mark.slow
def test_colour_photos_without_weights_say_so_in_one_line_and_train_from_scratch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "empty"))
    root = tmp_path / "ws"
    assert main(["--root", str(root), "run", "--data", str(colour_folder(tmp_path)), "--folds", "2", "--epochs", "1",
                 "--pseudo-rounds", "0", "--time-limit", "none"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "no ImageNet weights at hand" in line]
    assert len(lines) == 1 and "resnet-small from scratch" in lines[0] and WEIGHTS_ENV in lines[0]
    [run_dir] = (root / "submissions").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["models"] == ["resnet-small"]


def two_backbones_at_hand(tmp_path, backbone_weights, monkeypatch) -> tuple[str, str, Path]:
    """A weights folder ($COMPETITION_WEIGHTS) holding two timm test nets, the backbone table naming
    them best first: (best, cheaper, folder)."""
    best, cheaper = MODEL, "timm/test_efficientnet_gn"
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "test_efficientnet.pth").write_bytes(backbone_weights.read_bytes())
    torch.save(timm.create_model("test_efficientnet_gn", num_classes=1000).state_dict(),
               folder / "test_efficientnet_gn.pth")
    monkeypatch.setattr(policy, "BACKBONES", (best, cheaper))
    monkeypatch.setenv(WEIGHTS_ENV, str(folder))
    return best, cheaper, folder


@pytest.mark.slow
@pytest.mark.parametrize("best_rate, taken", [(50_000.0, "best"), (0.5, "cheaper")])
def test_a_time_limit_takes_the_best_backbone_whose_probe_fits_it_at_full_folds(tmp_path, backbone_weights, monkeypatch,
                                                                                capsys, best_rate, taken):
    """Two backbones at hand, best first: the best one's probe is measured first, and taken where it
    fits the limit at 4 folds; where it does not (its features at half an image a second), the
    cheaper one is measured and planned. The rates are stand-ins: what is tested is the choice."""
    best, cheaper, folder = two_backbones_at_hand(tmp_path, backbone_weights, monkeypatch)
    measured = []

    def stand_in_rates(public, cfg, device, count=128):
        measured.append(cfg.models[0])
        rate = best_rate if cfg.models[0] == best else 50_000.0
        return plan.Rates(train=rate / 3, predict=rate, member_setup_s=0.0, device="cpu", precision="bf16 features",
                          features=rate, probe_fit_s=1e-5)
    monkeypatch.setattr(measure, "measure_probe", stand_in_rates)
    root = tmp_path / "ws"
    assert main(["--root", str(root), "run", "--data", str(colour_folder(tmp_path)), "--time-limit", "1m"]) == 0
    out = capsys.readouterr().out
    [run_dir] = (root / "submissions").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    plan_line = [line for line in out.splitlines() if line.startswith("plan:")][-1]
    if taken == "best":
        assert measured == [best] and config["models"] == [best] and config["folds"] == 4
        assert "the next backbone at hand" not in out
    else:
        assert measured == [best, cheaper] and config["models"] == [cheaper] and config["folds"] == 4
        assert f"{best}'s probe does not fit the limit even at its smallest recipe" in out
        assert "the next backbone at hand" in out and len([line for line in out.splitlines()
                                                           if line.startswith("plan:")]) == 1
        assert config["weights"] == str(folder / "test_efficientnet_gn.pth")
    assert config["models"][0] in plan_line and config["probe"] in ("on", "only")


@pytest.mark.slow
def test_a_fine_tune_alone_keeps_the_best_backbone_and_measures_no_probe(tmp_path, backbone_weights, monkeypatch):
    """`--probe off`: no probe to price, so no cheaper backbone is tried, even where the best one's
    fine-tune is over the limit; the best at hand is fine-tuned."""
    best, _, _ = two_backbones_at_hand(tmp_path, backbone_weights, monkeypatch)
    probed = []
    monkeypatch.setattr(measure, "measure_probe", lambda *a, **k: probed.append(1))
    # stand-in rates too slow for any recipe: the plan is over the limit, and still no cheaper one is tried
    monkeypatch.setattr(measure, "measure_rates", lambda *a, **k: plan.Rates(
        train=0.5, predict=1.0, member_setup_s=0.0, device="cpu", precision="32-true"))
    root = tmp_path / "ws"
    assert main(["--root", str(root), "run", "--data", str(colour_folder(tmp_path)), "--time-limit", "40s",
                 "--probe", "off", "--folds", "2", "--pseudo-rounds", "0", "--epochs", "1"]) == 0
    [run_dir] = (root / "submissions").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert probed == [] and config["models"] == [best] and config["probe"] == "off"
