"""RunConfig: defaults, file and flag overrides, and errors that name the field and what it allows."""

from __future__ import annotations

import pytest

from competition.fitting.policy import check_models
from competition.config import FINE_TUNE_CROP, Augmentation, RunConfig, build_config
from competition.fitting.module import Classifier
from competition.fitting.policy import LARGE_DATA, resolve
from competition.errors import ConfigError


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('models = ["vgg-bn"]\nseeds = 5\n[model_kwargs]\nhidden = 50\n[augment]\nrotation = 4.0\n')
    cfg = build_config(path, seeds=2, epochs=None)
    assert (cfg.models, cfg.seeds, cfg.epochs, cfg.model_kwargs) == (("vgg-bn",), 2, RunConfig().epochs, {"hidden": 50})
    assert cfg.augment == Augmentation(rotation=4.0)


def test_unknown_keys_are_errors_naming_them(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"seedz": 3}')
    with pytest.raises(ConfigError, match=r"run.json: unknown config key\(s\) \['seedz'\]"):
        build_config(path)
    path.write_text('{"augment": {"spin": 3}}')
    with pytest.raises(ConfigError, match=r"unknown augment key\(s\) \['spin'\]"):
        build_config(path)


def test_a_value_out_of_range_names_its_field_and_range_not_the_whole_config():
    with pytest.raises(ConfigError, match=r"^invalid config value: pseudo_share = 1.5 \(strictly between 0 and 1\)$"):
        RunConfig(pseudo_share=1.5)
    with pytest.raises(ConfigError, match=r"^invalid config value: epochs = 0 \(auto or >= 1\)$"):
        build_config(epochs=0)


def test_a_choice_outside_its_literal_lists_the_allowed_values():
    with pytest.raises(ConfigError, match="schedule = 'linear' is not allowed; choose one of 'onecycle', 'cosine'"):
        RunConfig(schedule="linear")
    with pytest.raises(ConfigError, match="tta = 'maybe' is not allowed"):
        build_config(tta="maybe")


def test_an_unknown_model_fails_when_the_config_is_made(tmp_path):
    with pytest.raises(ConfigError, match="models: unknown model 'nosuch'; known: .*fastnet"):
        check_models(build_config(models=["fastnet", "nosuch"]))


def test_wrong_types_in_a_file_are_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = "ten"\n')
    with pytest.raises(ConfigError, match="epochs must be a number, got 'ten'"):
        build_config(path)
    path.write_text('epochs = 2.5\n')
    with pytest.raises(ConfigError, match="epochs must be a whole number"):
        build_config(path)
    path.write_text('epochs = [1,\n')
    with pytest.raises(ConfigError, match="run.toml: cannot read the config file"):
        build_config(path)


@pytest.mark.parametrize("table, named", [
    ('rotation = "ten"', r"augment.rotation = 'ten' \(auto or a number >= 0\)"),
    ("shift = -0.1", r"augment.shift = -0.1 \(a number >= 0\)"),
    ("zoom = true", r"augment.zoom = True \(auto or a number >= 0\)"),
    ("elastic_sigma = 0", r"augment.elastic_sigma = 0 \(a number > 0\)"),
])
def test_a_bad_augmentation_amount_in_a_file_is_named_before_anything_trains(tmp_path, table, named):
    path = tmp_path / "run.toml"
    path.write_text(f"[augment]\n{table}\n")
    with pytest.raises(ConfigError, match=named):
        build_config(path)


def test_the_config_round_trips_through_its_dict():
    cfg = RunConfig(models=("fastnet", "lenet5"), augment=Augmentation(shift=0.05), folds=3)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_pseudo_rounds_take_a_count_or_auto_and_nothing_else(tmp_path):
    assert build_config(pseudo_rounds="auto").pseudo_rounds == "auto"
    assert build_config(pseudo_rounds=2).pseudo_rounds == 2
    with pytest.raises(ConfigError, match=r"pseudo_rounds = 'many' \(auto or >= 0\)"):
        RunConfig(pseudo_rounds="many")
    with pytest.raises(ConfigError, match=r"pseudo_rounds = -1 \(auto or >= 0\)"):
        build_config(pseudo_rounds=-1)
    path = tmp_path / "run.toml"
    path.write_text('pseudo_rounds = 1.5\n')
    with pytest.raises(ConfigError, match="pseudo_rounds must be a whole number"):
        build_config(path)


def test_auto_settings_follow_the_data_and_explicit_ones_are_kept(tmp_path):
    small, large = LARGE_DATA - 1, LARGE_DATA
    def auto(channels: int, labelled: int, cfg: RunConfig = RunConfig()) -> RunConfig:
        return resolve(cfg, stored_size=28, channels=channels, labelled=labelled, hflip=channels == 3)

    assert (auto(1, small).models, auto(1, small).pseudo_rounds) == (("fastnet",), 1)
    assert (auto(1, large).models, auto(1, large).pseudo_rounds) == (("fastnet-wide",), 0)
    assert auto(3, large).models == ("resnet-small",)
    explicit = auto(1, large, RunConfig(models=("fastnet", "lenet5"), pseudo_rounds=2))
    assert (explicit.models, explicit.pseudo_rounds) == (("fastnet", "lenet5"), 2)
    assert (auto(1, small).augment.hflip, auto(3, small).augment.hflip) == ("off", "on")
    (tmp_path / "w.pth").write_bytes(b"")
    fine_tuning = auto(3, small, RunConfig(models=("timm/test_efficientnet",), weights=str(tmp_path / "w.pth"),
                                           normalise="backbone"))
    assert fine_tuning.augment.crop == FINE_TUNE_CROP and auto(3, small).augment.crop == 0.0
    resolved = auto(1, large)
    assert resolved.augment.is_resolved and RunConfig.from_dict(resolved.to_dict()) == resolved


def test_a_module_is_made_only_from_a_resolved_augmentation():
    with pytest.raises(ConfigError, match="policy.resolve"):
        Classifier.from_config(RunConfig(), model="fastnet", num_classes=10, image_shape=(1, 28, 28),
                               mean=(0.1,), std=(0.3,), steps_per_epoch=4)
