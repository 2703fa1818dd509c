"""RunConfig: defaults, file and flag overrides, clear errors."""

from __future__ import annotations

import pytest

from competition.config import RunConfig, build_config


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "vgg-bn"\nseeds = 5\n[model_kwargs]\nhidden = 50\n')
    cfg = build_config(path, seeds=2, epochs=None)
    assert (cfg.model, cfg.seeds, cfg.epochs, cfg.model_kwargs) == ("vgg-bn", 2, RunConfig().epochs, {"hidden": 50})


def test_unknown_keys_and_bad_values_are_errors_naming_them(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"seedz": 3}')
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['seedz'\]"):
        build_config(path)
    with pytest.raises(ValueError, match="invalid config value for pseudo_share"):
        RunConfig(pseudo_share=1.5)
